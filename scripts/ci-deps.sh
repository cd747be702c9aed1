#!/usr/bin/env bash
# Debian packages CI needs beside the Python venv, installed only when missing (quick when all
# are there): docker-compose (tests/test_deploy.py validates docker-compose.yml with it) and
# chromium + chromium-driver (browser tests). Safe to run again and again.
set -euo pipefail

missing=()
command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
if [ "${#missing[@]}" -eq 0 ]; then
  echo "ci-deps: docker-compose, chromium and chromedriver are installed"
  exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
echo "ci-deps: installing ${missing[*]}"
$sudo apt-get update -qq
for package in "${missing[@]}"; do
  case "$package" in
    # docker-compose only parses and validates here: without its recommends it does not pull
    # in the Docker engine (docker.io, containerd, runc).
    docker-compose) $sudo apt-get install -y -qq --no-install-recommends docker-compose ;;
    # chromium keeps its recommends: fonts-liberation makes screenshots readable.
    *) $sudo apt-get install -y -qq "$package" ;;
  esac
done
command -v docker-compose chromium chromedriver
