"""PySide6 widgets. They hold no business logic: that lives in waluigi_desk.core."""
