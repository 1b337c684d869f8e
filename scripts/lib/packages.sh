# Sourced by scripts/start.sh and scripts/test.sh: install missing Debian packages.
#   need_packages WHO CHECK-PACKAGE-PAIRS...  e.g. need_packages test.sh "fusermount3 fuse3"
# Each pair is "COMMAND PACKAGE...": the packages are installed when COMMAND is missing.
# Library checks use the pseudo-commands lib:NAME (ldconfig), py:venv and py:headers
# (Python.h, for the mypyc build of the model).

have() {
  case "$1" in
    lib:*) ldconfig -p 2>/dev/null | grep -q "${1#lib:}\.so" ;;
    py:venv) python3 -c 'import venv, ensurepip' >/dev/null 2>&1 ;;
    py:headers) python3 -c 'import os, sysconfig; assert os.path.exists(sysconfig.get_paths()["include"] + "/Python.h")' \
                  >/dev/null 2>&1 ;;
    *) command -v "$1" >/dev/null 2>&1 ;;
  esac
}

need_packages() {
  local who=$1; shift
  local missing=() pair check
  for pair in "$@"; do
    read -r check pkgs <<<"$pair"
    have "$check" || missing+=($pkgs)
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "$who: need the packages ${missing[*]}: run as root or: sudo apt-get install ${missing[*]}" >&2
    return 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}
