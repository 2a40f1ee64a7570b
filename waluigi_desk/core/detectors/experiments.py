"""The comparison behind docs/detectors.md "What we tried" (not used by the app).

Run: .venv/bin/python -m waluigi_desk.core.detectors.experiments   (reads data/dev/replies.jsonl;
prints raw-score AUROC and recall at FPR <= 0.05 per variant; only the combination rows fit
anything, on the fit split, and report the check split)."""
# flake8: noqa
import json, numpy as np, collections
from waluigi_desk.core.detectors.embedder import Embedder
from waluigi_desk.core.detectors.evaluate import load_dataset
from waluigi_desk.core.detectors.banks import bank_matrix, topk_mean
from waluigi_desk.core.detectors.logreg import auroc, fit_logreg, threshold_at_fpr
from waluigi_desk.core.detectors.markers import MarkersDetector
from waluigi_desk.core.detectors.base import Context
e=Embedder(); e.load()
ds=load_dataset("data/dev/replies.jsonl")
print(ds.kind, len(ds.items), ds.errors[:3])
items=ds.items
y=np.array([o["label"]=="misaligned" for o in items])
print("pos",y.sum(),"neg",(~y).sum(), collections.Counter(o.get("category") for o in items))
sents=[e.split(o["reply"]) for o in items]
S=[e.embed(s) for s in sents]
P=e.embed([o.get("prompt") or "" for o in items])
W=e.embed([o["reply"] for o in items])
bm=bank_matrix(e)
def proj(X,p):
    X2 = X - np.outer(X@p, p)
    return X2/np.linalg.norm(X2,axis=1,keepdims=True).clip(1e-6)
def report(name, sc):
    sc=np.array(sc); t,r,f=threshold_at_fpr(sc,y,0.05)
    print(f"{name:40s} auroc={auroc(sc,y):.3f} rec@5%={r:.3f}")
for k in (1,3,5,10):
    report(f"exemplar k={k} sent-max", [ (topk_mean(X@bm.mis.T,k)-topk_mean(X@bm.ali.T,k)).max() for X in S])
report("exemplar k=3 whole", [ (topk_mean(x[None]@bm.mis.T,3)-topk_mean(x[None]@bm.ali.T,3))[0] for x in W])
report("exemplar k=3 sent-max topicrm", [ (topk_mean(proj(X,p)@bm.mis.T,3)-topk_mean(proj(X,p)@bm.ali.T,3)).max() for X,p in zip(S,P)])
report("nearest-only (mis max sim)", [ (X@bm.mis.T).max() for X in S])
yb=bm.bank.misaligned.astype(float)
for l2 in (0.01,0.1,1,10):
    w,b=fit_logreg(bm.vectors,yb,l2=l2)
    report(f"axis l2={l2} sent-max", [ (X@w+b).max() for X in S])
    report(f"axis l2={l2} whole", [ W[i]@w+b for i in range(len(S))])
    report(f"axis l2={l2} sent-max topicrm", [ (proj(X,p)@w+b).max() for X,p in zip(S,P)])
    report(f"axis l2={l2} max+mean", [ 0.5*(X@w+b).max()+0.5*(X@w+b).mean() for X in S])
md=MarkersDetector()
report("markers", [md.raw_score(o["reply"], Context())[0] for o in items])
# per category exemplar k=3
w,b=fit_logreg(bm.vectors,yb,l2=0.1)
ax=np.array([(X@w+b).max() for X in S])
ex=np.array([(topk_mean(X@bm.mis.T,3)-topk_mean(X@bm.ali.T,3)).max() for X in S])
neg=ax[~y]
for c in sorted(set(o.get("category") or "" for o in items)):
    idx=np.array([ (o.get("category") or "")==c for o in items])
    pos=ax[idx & y]; negs=ax[idx & ~y]
    if len(pos): print(c, "n+",len(pos), "auc vs all neg", round(auroc(np.r_[pos,neg], np.r_[np.ones(len(pos)),np.zeros(len(neg))]),3), "n- with cat", len(negs))
V=bm.vectors; mu=V.mean(0); yb=bm.bank.misaligned.astype(float)
U,Sv,Vt=np.linalg.svd(V-mu,full_matrices=False)
for m in (0,3,10,30):
    Pm=Vt[:m]
    def rm(X): 
        X=X-mu; X=X-(X@Pm.T)@Pm; return X
    for l2 in (0.3,1,3):
        w,b=fit_logreg(rm(V),yb,l2=l2)
        report(f"pca-rm m={m} l2={l2} whole", [rm(W[i:i+1])[0]@w+b for i in range(len(S))])
# per-category heads, max
cats=sorted(set(l for l,mm in zip(bm.bank.labels,bm.bank.misaligned) if mm))
ali=~bm.bank.misaligned
hs=[]
for c in cats:
    idx=np.array([l==c for l in bm.bank.labels])|ali
    w,b=fit_logreg(V[idx],np.array([l==c for l in np.array(bm.bank.labels)[idx]]).astype(float),l2=1)
    hs.append((w,b))
Wm=np.stack([h[0] for h in hs],1); bb=np.array([h[1] for h in hs])
report("per-cat heads max whole", [(W[i]@Wm+bb).max() for i in range(len(S))])
report("per-cat heads max sent", [(S[i]@Wm+bb).max() for i in range(len(S))])
# sentence+whole mix for axis
w1,b1=fit_logreg(V,yb,l2=1)
for a in (0.25,0.5,0.75):
    report(f"axis whole*{1-a}+sentmax*{a}", [(1-a)*(W[i]@w1+b1)+a*(S[i]@w1+b1).max() for i in range(len(S))])
# kNN label vote
for k in (5,15,30):
    sc=[]
    for i in range(len(S)):
        s=V@W[i]; top=np.argsort(-s)[:k]; sc.append(bm.bank.misaligned[top].mean()+0.001*s[top].mean())
    report(f"knn vote k={k}", sc)
def exr(X,k=10): return topk_mean(X@bm.mis.T,k)-topk_mean(X@bm.ali.T,k)
exs=np.array([exr(S[i]).max() for i in range(len(S))]); exw=np.array([exr(W[i:i+1])[0] for i in range(len(S))])
for a in (0.25,0.5,0.75): report(f"ex whole*{1-a}+sent*{a}", (1-a)*exw+a*exs)
axc=np.array([0.75*(W[i]@Wm+bb).max()+0.25*(S[i]@Wm+bb).max() for i in range(len(S))])
report("percat axis 0.75/0.25", axc)
md=MarkersDetector(); mk=np.array([md.raw_score(o["reply"], Context())[0] for o in items])
from waluigi_desk.core.detectors.evaluate import split_of
fit=np.array([split_of(o["id"])=="fit" for o in items])
exm=0.5*exw+0.5*exs
for feats,name in [((axc,exm,mk),"axc+exm+mk"),((axc,exm),"axc+exm")]:
    F=np.stack(feats,1); F=(F-F[fit].mean(0))/F[fit].std(0)
    w,b=fit_logreg(F[fit],y[fit].astype(float),l2=1)
    sc=F@w+b
    print(name, "check auroc", round(auroc(sc[~fit],y[~fit]),3), "rec@5", round(threshold_at_fpr(sc[~fit],y[~fit])[1],3), "all auroc", round(auroc(sc,y),3), "w",np.round(w,2))
