"""Exploration (not shipped): per-class thresholds (each part's val 99.5th percentile within the
predicted class) against the shipped global ones: val, test, the build's unused images by
folder (see ood_unused.py) and the dev/fresh/fresh2 non-X-rays (fresh3 not used).

    python benchmarks/ood_perclass.py MODEL_WITH_STATS.keras DATASET [SOURCES]
"""
import sys, csv, numpy as np
sys.path.insert(0, str(__import__('pathlib').Path(__file__).resolve().parent))
from pathlib import Path
import ood_detection as od
from cxrtool.artifact import load_model
from cxrtool.ood import Judge, feature_model, layout_thumbnails, picture_vectors
from cxrtool.inputs import resize_image, load_split
from cxrtool.imageio import read_image
from cxrtool.manifest import read_manifest
model_path, data = Path(sys.argv[1]), Path(sys.argv[2])
L = model_path.stem
loaded = load_model(model_path); j = Judge.from_record(loaded.info.extra['ood'])
probe = feature_model(loaded.model); size = int(loaded.info.image_size)
def parts(x):
    P, F = [], []
    for i in range(0, len(x), 64):
        xb = x[i:i+64]; pad = np.concatenate([xb, np.repeat(xb[-1:], 64-len(xb), 0)]).astype(np.float32)[..., None]
        p, f = probe.predict_on_batch(pad); P.append(np.asarray(p)[:len(xb)]); F.append(np.asarray(f)[:len(xb)])
    P, F = np.concatenate(P), np.concatenate(F)
    d = np.stack([j.features.distance(F), j.layout.distance(layout_thumbnails(x)), j.picture.distance(picture_vectors(x) / j.picture_scale)], 1)
    return d, P.argmax(1)
m = read_manifest(data)
val = load_split(m, 'val', size).x; test = load_split(m, 'test', size).x
dv, cv = parts(val); dt, ct = parts(test)
thr_g = np.array([j.features.threshold, j.layout.threshold, j.picture.threshold])
thr_c = np.stack([np.quantile(dv[cv == c], 0.995, axis=0) if (cv == c).sum() >= 20 else thr_g for c in range(3)])
def flagged(d, c, per):
    thr = thr_c[c] if per else thr_g
    return (d > thr).any(1)
root = Path(sys.argv[3]) if len(sys.argv) > 3 else Path(__file__).resolve().parents[1] / '..' / 'shared' / 'data' / 'sources'
unused = [root / r['source'] / r['source_file'] for r in csv.DictReader(open(data / 'excluded.csv')) if r['reason'] == 'balanced out']
folders = np.array([str(Path(p).relative_to(root).parent) for p in unused])
xu = np.stack([resize_image(read_image(p).pixels, size) for p in unused]); du, cu = parts(xu)
items = od.non_xray_images([], 25) + od.fresh_non_xray_images(25) + od.fresh2_non_xray_images(25)
xn = np.stack([resize_image(g, size) for _, _, g, _ in items]); dn, cn = parts(xn); imgflag = np.array([f is not None for *_, f in items])
print(L, "classes predicted for non-X-rays:", np.bincount(cn, minlength=3), "(order", loaded.info.classes, ")")
print(L, "per-class val counts", np.bincount(cv, minlength=3))
for per in (False, True):
    tag = "per-class" if per else "global"
    print(f"{L} {tag}: val {flagged(dv,cv,per).mean():.3%}  test {flagged(dt,ct,per).mean():.3%}  unused {flagged(du,cu,per).mean():.3%}",
          " ".join(f"{f.split('/')[-1]}={flagged(du[folders==f],cu[folders==f],per).mean():.2%}" for f in sorted(set(folders)) if 'COVID-19' in f),
          f" non-X-rays dev+fresh+fresh2 {(flagged(dn,cn,per)|imgflag).mean():.2%}")
