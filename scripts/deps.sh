#!/usr/bin/env bash
# Installs the Debian packages rlx builds and tests with (the CUDA toolkit is not among them:
# install it from NVIDIA; without it rlx builds its CPU path only).
set -euo pipefail
pkgs=(cmake ninja-build pkg-config gcc g++ libjansson-dev libcriterion-dev libboost-context-dev
      libtomlplusplus-dev libpcre2-dev libutf8proc-dev clang libclang-rt-14-dev python3 python3-venv)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "deps: all present"
  exit 0
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
