#!/usr/bin/env bash
# Build petl's CUDA binary on a machine with no GPU and no system CUDA toolkit, and pack it to carry to the
# GPU machine. Recipe and measurements: docs/cuda.md.
#
# Steps (each is skipped when already done, so re-running is cheap):
#   1. a throwaway venv holding pinned NVIDIA CUDA 13.0 wheels from PyPI (nvcc, headers, cudart, cublas, ...);
#   2. a CUDA_HOME made of links into those wheels, plus a link-time stub libcuda.so (the real driver is
#      used at run time on the GPU machine);
#   3. cargo build --release -p petl-cli --features cuda into a separate target dir;
#   4. strip + xz the binary and print how to run it on the GPU machine.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: scripts/build-cuda.sh [--help]

Builds the `petl` binary with the `cuda` feature and writes <target-dir>/petl-cuda.xz.

Environment:
  PETL_CUDA_CACHE      toolchain cache (venv + CUDA_HOME)   default: $HOME/.cache/petl/cuda-toolchain
  PETL_CUDA_TARGET_DIR cargo target dir for the CUDA build  default: <repo>/target-cuda
  CUDA_COMPUTE_CAP     GPU compute capability to compile for default: 90 (H100/H200)
                       (required: there is no nvidia-smi here to ask the GPU)
  PETL_PYTHON          python used to create the venv       default: python3

On the GPU machine (CUDA 13.0 driver, e.g. 580.x):
  xz -dk petl-cuda.xz && chmod +x petl-cuda
  LD_LIBRARY_PATH=/usr/local/cuda/targets/x86_64-linux/lib:/usr/local/nvidia/lib64 ./petl-cuda train --device cuda ...
EOF
}

case "${1:-}" in
  -h | --help)
    usage
    exit 0
    ;;
  "") ;;
  *)
    echo "build-cuda.sh: unknown argument '$1' (see --help)" >&2
    exit 2
    ;;
esac

log() { echo "build-cuda: $*" >&2; }
die() {
  echo "build-cuda: error: $*" >&2
  exit 1
}

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${PETL_CUDA_CACHE:-$HOME/.cache/petl/cuda-toolchain}"
target_dir="${PETL_CUDA_TARGET_DIR:-$repo_root/target-cuda}"
compute_cap="${CUDA_COMPUTE_CAP:-90}"
python_bin="${PETL_PYTHON:-python3}"
venv="$cache/venv"
cuda_home="$cache/cuda-home"

[[ "$compute_cap" =~ ^[0-9]+$ ]] || die "CUDA_COMPUTE_CAP must be a number like 90, got '$compute_cap'"
for tool in cargo gcc strip xz "$python_bin"; do
  command -v "$tool" > /dev/null || die "'$tool' not found on PATH"
done

# The 13.0 series matches the GPU machine's 580 driver: a newer nvcc emits PTX that driver cannot load, and
# unpinned, pip pairs nvvm 13.5 with nvcc 13.0.
pins=(
  "nvidia-cuda-nvcc==13.0.88"
  "nvidia-nvvm==13.0.88"
  "nvidia-cuda-crt==13.0.88"
  "nvidia-cuda-runtime==13.0.96"
  "nvidia-cuda-nvrtc==13.0.88"
  "nvidia-cublas==13.0.2.14"
  "nvidia-curand==10.4.0.35"
  "nvidia-cuda-cccl==13.0.*"
)

# --- 1. toolchain venv -------------------------------------------------------------------------------------
mkdir -p "$cache"
if [[ ! -x "$venv/bin/python" ]]; then
  log "creating venv at $venv"
  "$python_bin" -m venv "$venv"
fi
py="$venv/bin/python"
stamp="$venv/.petl-cuda-pins"
want="$(printf '%s\n' "${pins[@]}")"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  log "pinned CUDA wheels already installed in $venv"
else
  log "installing pinned CUDA wheels into $venv (about 1 GB)"
  "$py" -m pip install --disable-pip-version-check --quiet "${pins[@]}" \
    || die "pip could not install the pinned CUDA wheels (is PyPI reachable?)"
  printf '%s\n' "$want" > "$stamp"
fi

site="$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
cu="$site/nvidia/cu13"
for need in bin/nvcc include/cuda_runtime.h lib/libcudart.so.13 lib/libcublas.so.13 lib/libcublasLt.so.13 \
  lib/libnvrtc.so.13 lib/libcurand.so.10 nvvm; do
  [[ -e "$cu/$need" ]] || die "expected $cu/$need after installing the wheels; the wheel layout changed?"
done

# --- 2. CUDA_HOME of links + stub libcuda -------------------------------------------------------------------
# cudarc declares the driver API as dynamically linked, so the linker needs a libcuda.so; the wheels do not
# ship one (it comes with the driver). A stub exporting every cu* symbol cudarc references satisfies the
# link; its soname libcuda.so.1 makes the binary load the real driver on the GPU machine.
cd "$repo_root"
cargo fetch --quiet || die "cargo fetch failed"
cudarc_version="$(awk '/^name = "cudarc"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)"
[[ -n "$cudarc_version" ]] || die "cudarc is not in Cargo.lock; does candle-core's cuda feature still pull it?"
cudarc_src=""
for dir in "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"cudarc-$cudarc_version"; do
  [[ -d "$dir" ]] && cudarc_src="$dir"
done
[[ -n "$cudarc_src" ]] || die "cudarc-$cudarc_version sources not found under ${CARGO_HOME:-$HOME/.cargo}/registry/src"
driver_sys="$cudarc_src/src/driver/sys/mod.rs"
[[ -f "$driver_sys" ]] || die "$driver_sys not found (cudarc layout changed?)"

mkdir -p "$cuda_home/lib64/stubs"
for d in bin include nvvm; do
  ln -sfn "$cu/$d" "$cuda_home/$d"
done
# The versioned names too: the linker resolves libcublas.so.13's own DT_NEEDED (libcublasLt.so.13) by name.
for f in "$cu"/lib/*.so*; do
  ln -sfn "$f" "$cuda_home/lib64/$(basename "$f")"
done
for lib in cudart cublas cublasLt nvrtc; do
  ln -sfn "$cu/lib/lib$lib.so.13" "$cuda_home/lib64/lib$lib.so"
done
ln -sfn "$cu/lib/libcurand.so.10" "$cuda_home/lib64/libcurand.so"

stub="$cuda_home/lib64/stubs/libcuda.so"
stub_src="$cuda_home/lib64/stubs/libcuda-stub.c"
stub_key="$cuda_home/lib64/stubs/.cudarc-version"
if [[ -f "$stub" && -f "$stub_key" && "$(cat "$stub_key")" == "$cudarc_version" ]]; then
  log "stub libcuda.so for cudarc $cudarc_version already built"
else
  log "generating stub libcuda.so from $driver_sys"
  grep -oE '\bfn cu[A-Za-z0-9_]+\(' "$driver_sys" | sed -E 's/^fn //; s/\($//' | sort -u \
    | awk '{ printf "int %s(void) { return 999; }\n", $1 }' > "$stub_src"
  count="$(wc -l < "$stub_src")"
  ((count > 100)) || die "only $count cu* functions found in $driver_sys; the stub would not link"
  gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$stub" "$stub_src"
  echo "$cudarc_version" > "$stub_key"
  log "stub exports $count driver functions"
fi

# --- 3. cargo build -------------------------------------------------------------------------------------------
export CUDA_HOME="$cuda_home"
export PATH="$cuda_home/bin:$PATH"
export CUDA_COMPUTE_CAP="$compute_cap"
export CARGO_TARGET_DIR="$target_dir"
nvcc --version | tail -n 2 >&2 || die "nvcc from the wheels does not run"
log "cargo build --release -p petl-cli --features cuda (CUDA_COMPUTE_CAP=$compute_cap, target dir $target_dir)"
log "a cold build takes 16-20 minutes on 2 cores (candle-kernels compiles all its CUDA kernels)"
start=$SECONDS
cargo build --release -p petl-cli --features cuda
log "cargo build finished in $((SECONDS - start)) s"

# --- 4. pack --------------------------------------------------------------------------------------------------
bin="$target_dir/release/petl"
out="$target_dir/petl-cuda"
[[ -x "$bin" ]] || die "$bin was not produced"
strip -o "$out" "$bin"
xz -9 -T0 -f -k "$out"
size() { du -h "$1" | cut -f1; }
log "stripped binary: $out ($(size "$out"))"
echo "$out.xz ($(size "$out.xz"), $(stat -c %s "$out.xz") bytes)"
cat <<EOF

Carry $out.xz to the GPU machine, then:
  xz -dk petl-cuda.xz && chmod +x petl-cuda
  LD_LIBRARY_PATH=/usr/local/cuda/targets/x86_64-linux/lib:/usr/local/nvidia/lib64 ./petl-cuda train --device cuda ...
(built for compute capability $compute_cap against CUDA 13.0; needs libcuda, libcublas, libcublasLt, libcudart,
libcurand at run time)
EOF
