#!/usr/bin/env bash
# Fetch the Warzone 2100 soundtrack (Debian package warzone2100-music) into DIR:
# the audio files, flat, plus the package's licence as DIR/COPYRIGHT.
# Needs apt-get and dpkg (Debian/Ubuntu); no root, but the apt package lists
# must be present (`apt-get update`, as root, once).
#
# Usage: scripts/fetch_music.sh DIR
set -euo pipefail

PACKAGE=warzone2100-music

if [[ $# -ne 1 ]]; then
    echo "usage: $0 DIR   (downloads Debian's $PACKAGE and puts its audio files in DIR)" >&2
    exit 2
fi
target_dir=$1

for tool in apt-get dpkg; do
    if ! command -v "$tool" >/dev/null; then
        echo "error: $tool not found; this script needs a Debian or Ubuntu system" >&2
        exit 2
    fi
done

work_dir=$(mktemp -d)
trap 'rm -rf "$work_dir"' EXIT

if ! (cd "$work_dir" && apt-get download "$PACKAGE") >"$work_dir/apt.log" 2>&1; then
    if grep -qE "Unable to locate package|has no installation candidate" "$work_dir/apt.log"; then
        echo "error: apt does not know $PACKAGE; run 'apt-get update' (as root) once, then retry" >&2
        exit 2
    fi
    echo "error: apt-get download $PACKAGE failed:" >&2
    cat "$work_dir/apt.log" >&2
    exit 1
fi

deb_file=$(find "$work_dir" -maxdepth 1 -name "${PACKAGE}_*.deb" | head -n 1)
dpkg -x "$deb_file" "$work_dir/root"

mapfile -t audio_files < <(find "$work_dir/root" -type f \( -name '*.opus' -o -name '*.ogg' \) | sort)
if [[ ${#audio_files[@]} -eq 0 ]]; then
    echo "error: no .opus or .ogg files found in $(basename "$deb_file")" >&2
    exit 1
fi
# Moving flat would silently overwrite two tracks that share a name.
duplicates=$(printf '%s\n' "${audio_files[@]}" | xargs -d '\n' -n 1 basename | sort | uniq -d)
if [[ -n $duplicates ]]; then
    echo "error: several files in the package share these names: $duplicates" >&2
    exit 1
fi

mkdir -p "$target_dir"
mv -f "${audio_files[@]}" "$target_dir/"
cp "$work_dir/root/usr/share/doc/$PACKAGE/copyright" "$target_dir/COPYRIGHT"

total_bytes=0
for file in "${audio_files[@]}"; do
    total_bytes=$((total_bytes + $(stat -c %s "$target_dir/$(basename "$file")")))
done
total_mib=$((total_bytes / 1024 / 1024))
echo "fetched ${#audio_files[@]} audio files ($total_mib MiB) from $(basename "$deb_file") into $target_dir"
echo "licence: $target_dir/COPYRIGHT"
