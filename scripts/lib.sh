# Shared by the scripts in scripts/: sourced (`. scripts/lib.sh`), not run.

# install_missing TAG PACKAGE...: installs, with apt-get, the Debian
# packages of the list that are not installed yet (as root, or through
# sudo). TAG prefixes the message ("setup: installing ...").
install_missing() {
  local tag="$1" p
  shift
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  echo "$tag: installing ${missing[*]}"
  local sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update -q
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# The sanitizer build (docs/testing.md): clang 14 with AddressSanitizer and
# UBSan, and libFuzzer's coverage in everything (-Dfuzz=true), so one build
# directory serves both the sanitized test run and scripts/fuzz.
# -O0, except the packet path, the fuzzed code and the ledger
# (-Dhot_optimization=2):
# clang's optimiser is two thirds of a sanitized Boost unit's compile time,
# and the tests mostly wait (docs/testing.md#cost).
# Unity files (-Dunity=on, four sources to one compiler run): the sources of
# a target share Boost's headers and templates, read once per unity file
# (docs/testing.md#cost). Each source still compiles alone in the gcc build.
sanitizer_options=(-Dwerror=true -Dfuzz=true -Db_sanitize=address,undefined -Db_lundef=false
  -Doptimization=0 -Dhot_optimization=2 -Dunity=on)
# Turns the sanitizers' stack addresses into FILE:LINE (package llvm-14,
# which clang-14 only recommends); for ASAN_OPTIONS and UBSAN_OPTIONS.
sanitizer_symbolizer=external_symbolizer_path=/usr/lib/llvm-14/bin/llvm-symbolizer

# sanitizer_setup TAG DIR: installs clang and its runtimes if missing and
# configures DIR the first time. A DIR configured otherwise (by an older
# script, with gcc) is configured again from scratch.
sanitizer_setup() {
  local tag="$1" dir="$2"
  install_missing "$tag" clang-14 libclang-rt-14-dev llvm-14 || return 1
  if [ -f "$dir/build.ninja" ] && ! grep -q 'clang++-14' "$dir/build.ninja"; then
    echo "$tag: $dir is not a clang sanitizer build: configuring it again"
    rm -rf "$dir"
  fi
  [ -f "$dir/build.ninja" ] && return 0
  # Through ccache when the machine has it, as meson does by itself for the
  # gcc build: a fresh clone on a machine that built the same code before
  # compiles nothing again (docs/testing.md#cost). With CC set, meson does
  # not look for ccache on its own.
  local wrap=""
  command -v ccache >/dev/null && wrap="ccache "
  echo "$tag: configuring $dir (${wrap}clang 14, ${sanitizer_options[*]})"
  CC="${wrap}clang-14" CXX="${wrap}clang++-14" meson setup "$dir" "${sanitizer_options[@]}" >"$dir.setup.log" 2>&1 || {
    cat "$dir.setup.log" >&2
    echo "$tag: meson setup $dir failed" >&2
    return 1
  }
  rm -f "$dir.setup.log"
}
