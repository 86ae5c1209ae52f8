#!/usr/bin/env bash
# Builds the .deb with CPack from a build directory, installs it with dpkg -i, checks that the
# installed binary runs and the unit, man page and config landed, then purges the package.
# Usage: deb_check.sh BUILD_DIR. Needs root (it installs a package); skips (exit 77) otherwise.
set -euo pipefail
build=$1
[[ $EUID -eq 0 ]] || { echo "not root: skipping the .deb install check"; exit 77; }
if dpkg-query -W -f='${Status}' framecast 2>/dev/null | grep -q "install ok installed"; then
  echo "a framecast package is already installed here: not touching it"; exit 77
fi
work=$(mktemp -d)
trap 'dpkg -P framecast >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
(cd "$work" && cpack -G DEB --config "$build/CPackConfig.cmake" -B "$work" >cpack.log 2>&1) \
  || { cat "$work/cpack.log"; exit 1; }
deb=$(ls "$work"/framecast_*.deb)
dpkg-deb --info "$deb" | grep -E "Package|Version|Depends"
dpkg -i "$deb"
/usr/bin/framecast --version
/usr/bin/framecast --version | grep -q "^framecast "
# Stripped, as Debian's policy asks: no debug sections or symbol table in the installed binary.
if readelf -S /usr/bin/framecast | grep -qE '\.debug_|\.symtab'; then
  echo "/usr/bin/framecast is not stripped"; exit 1
fi
ls -l /usr/bin/framecast
test -f /usr/lib/systemd/system/framecast.service || test -f /lib/systemd/system/framecast.service
grep -q "^DynamicUser=yes" /usr/lib/systemd/system/framecast.service
test -f /etc/framecast/framecast.toml
test -f /usr/share/man/man1/framecast.1 || test -f /usr/share/man/man1/framecast.1.gz
/usr/bin/framecast --config /etc/framecast/framecast.toml serve --help >/dev/null
test -f /usr/share/bash-completion/completions/framecast
test -f /usr/share/zsh/vendor-completions/_framecast
test -f /usr/include/framecast/codec.hpp
test -f /usr/include/framecast/error.hpp
# Only the codec ships as a library: no headers of the io and backplane parts.
test ! -e /usr/include/framecast/io
test ! -e /usr/include/framecast/backplane.hpp
echo "deb installed and ran: $(basename "$deb")"
