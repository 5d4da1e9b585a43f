#!/usr/bin/env bash
# Installs the Debian packages sslzoo needs (bundled data sets; Chromium for the page tests), where apt
# exists and we are root.
# Elsewhere it says what to install; the datasets that need them then raise a clear error.
set -u
packages=(dataset-fashion-mnist fonts-noto-color-emoji unicode-data openclipart-png chromium chromium-driver)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "installing Debian data packages: ${missing[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null \
    || echo "warning: apt-get could not install ${missing[*]}; datasets that need them will say so"
else
  echo "note: install these Debian packages for the fashion-mnist, emoji and clipart datasets: ${missing[*]}"
  echo "      (sudo apt-get install ${missing[*]}), or point SSLZOO_FASHION_MNIST_DIR at the IDX files"
fi
exit 0
