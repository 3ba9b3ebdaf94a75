#!/usr/bin/env bash
# The corpus recipe: fetch the music of ten freely licensed game soundtracks
# from Debian main (DFSG-free) into DIR, one folder per source:
#
#   DIR/<source>/*.ogg|*.opus   the music files, flat
#   DIR/<source>/COPYRIGHT      the Debian package's copyright file (the licence)
#   DIR/<source>/SOURCE.txt     package, version, style, licence lines, file count
#
# about 13.6 h in all (docs/corpus.md lists hours per source), in styles from
# orchestral fantasy to chiptune. Needs apt-get and dpkg (Debian/Ubuntu), no
# root: `apt-get download` only fetches the .deb files (kept in DIR/.debs, a
# hidden folder that prepare ignores, so a rerun downloads nothing, and a
# source already unpacked from the same version is kept); the apt
# package lists must be present (`apt-get update`, as root, once).
#
# With --travel OUT, also write 16 kHz mono Opus copies at 16 kbit/s into OUT
# (same layout, licences included): about 7 MB per hour of music, for moving
# the corpus to a GPU machine. Needs opusenc (Debian's opus-tools) and a
# Python with audiosort installed ($PYTHON, default python3).
#
# With --more, also fetch MORE_SOURCES (the big recipe, docs/corpus.md "The
# big recipe"): 27 more sources, 37 in all, about 30.4 h; 4.4 GB more .deb
# files. Two keep their music in zip archives inside the package, so --more
# also needs unzip.
#
# Usage: scripts/fetch_music.sh DIR [--more] [--travel OUT]
#
# Then, holding one source out of training (docs/corpus.md):
#   audiosort prepare DIR --out data/recipe --group-pattern "$(scripts/fetch_music.sh --group-pattern)" \
#       --test-sources 'supertux/*'
# and for the big recipe (--more), with three sources held out:
#   audiosort prepare DIR --out data/recipe-big --group-pattern "$(scripts/fetch_music.sh --group-pattern --more)" \
#       --test-sources 'supertux/*' --test-sources 'marsshooter/*' --test-sources 'enigma/*'
set -euo pipefail

# name | Debian package | music files inside the package (find -path pattern) | style
#   [| zip archive inside the package that holds the music (find -path
#      pattern); the music pattern then starts with */unzipped/]
SOURCES=(
    "warzone2100|warzone2100-music|*/games/warzone2100/music/*|electronic and ambient sci-fi"
    "wesnoth|wesnoth-1.16-music|*/games/wesnoth/1.16/data/core/music/*|orchestral fantasy"
    "widelands|widelands-data|*/games/widelands/data/music/*|orchestral and folk"
    "hedgewars|hedgewars-data|*/games/hedgewars/Data/Music/*|comic themes in many styles"
    "supertux|supertux-data|*/games/supertux2/music/*|chiptune and synth pop"
    "freedroidrpg|freedroidrpg-data|*/freedroidrpg/data/sound/music/*|electronic and industrial"
    "flare|flare-game|*/games/flare/mods/fantasycore/music/*|orchestral fantasy"
    "megaglest|megaglest-data|*/games/megaglest/*/music/*|epic orchestral, world"
    "openclonk|openclonk-data|*/games/openclonk/Music.ocg/*|ambient and orchestral"
    "freecol|freecol|*/games/freecol/default/resources/music/*|classical and folk"
)
# The big recipe adds these (--more); same fields, all Debian main.
MORE_SOURCES=(
    "ufoai|ufoai-music|*/unzipped/music/*|orchestral, ambient and electronic sci-fi|*/games/ufoai/base/0music.pk3"
    "naev|naev-data|*/naev/dat/snd/music/*|space ambient, synth and orchestral"
    "colobot|colobot-common-sounds|*/games/colobot/music/*|electronic and orchestral sci-fi"
    "supertuxkart|supertuxkart-data|*/games/supertuxkart/data/music/*|upbeat racing pop, rock and electronic"
    "marsshooter|marsshooter-data|*/games/marsshooter/audio/music/*|metal and dark orchestral"
    "unknown-horizons|unknown-horizons|*/unknown-horizons/content/audio/music/*|orchestral and classical"
    "warmux|warmux-data|*/games/warmux/music/*|comic, acoustic and world"
    "fillets|fillets-ng-data|*/games/fillets-ng/music/*|calm acoustic and electronic"
    "hyperrogue|hyperrogue-music|*/hyperrogue/music/*|atmospheric world and ambient"
    "redeclipse|redeclipse-data|*/games/redeclipse/data/sounds/music/*|electronic and rock"
    "enigma|enigma-data|*/games/enigma/music/*|calm piano, ragtime and ambient"
    "zaz|zaz-data|*/games/zaz/mus*|electronic"
    "ardentryst|ardentryst|*/games/ardentryst/Music/*|fantasy, orchestral and synth"
    "lordsawar|lordsawar-data|*/games/lordsawar/music/*|orchestral fantasy"
    "btanks|btanks-data|*/games/btanks/data/tunes/*|rock and electronic"
    "xmoto|xmoto-data|*/games/xmoto/Textures/Musics/*|rock and electronic"
    "extremetuxracer|extremetuxracer-data|*/games/etr/music/*|light jazz and pop"
    "lincity-ng|lincity-ng-data|*/games/lincity-ng/music/*|blues and ambient"
    "0ad|0ad-data|*/unzipped/audio/music/*|orchestral and world, ancient cultures|*/games/0ad/mods/public/public.zip"
    "freeorion|freeorion-data|*/games/freeorion/default/data/sound/artificial_intelligence*|space ambient"
    "torus-trooper|torus-trooper-data|*/games/torus-trooper/sounds/musics/*|electronic shoot-'em-up"
    "gunroar|gunroar-data|*/games/gunroar/sounds/musics/*|electronic shoot-'em-up"
    "titanion|titanion-data|*/games/titanion/sounds/musics/*|electronic shoot-'em-up"
    "mu-cade|mu-cade-data|*/games/mu-cade/sounds/musics/*|electronic shoot-'em-up"
    "parsec47|parsec47-data|*/games/parsec47/sounds/*|electronic shoot-'em-up"
    "rrootage|rrootage-data|*/games/rrootage/sounds/*|electronic shoot-'em-up"
    "tumiki-fighters|tumiki-fighters-data|*/games/tumiki-fighters/sounds/*|electronic shoot-'em-up"
)
# Versions of one piece within a source (warzone's _enhanced, wesnoth's
# frantic-old, victory2, hedgewars' _sd sudden-death themes) must share a split.
GROUP_PATTERN='_enhanced(?=\.)|[-_]old(?=\.)|_remix(?=\.)|_sd(?=\.)|(?<![0-9])2(?=\.ogg$)'

# The big recipe's sources add supertuxkart's _fast and _f race versions and
# ardentryst's theme1_raw; no file of the ten above matches these.
MORE_GROUP_PATTERN='_fast(?=\.)|_f(?=\.ogg$)|_raw(?=\.)'

if [[ ${1:-} == --group-pattern ]]; then
    if [[ ${2:-} == --more ]]; then
        printf '%s\n' "$GROUP_PATTERN|$MORE_GROUP_PATTERN"
    else
        printf '%s\n' "$GROUP_PATTERN"
    fi
    exit 0
fi
travel_dir=
more=
args=("$@")
if [[ ${args[1]:-} == --more ]]; then
    more=1
    args=("${args[0]}" "${args[@]:2}")
fi
if [[ ${#args[@]} -eq 3 && ${args[1]} == --travel ]]; then
    travel_dir=${args[2]}
elif [[ ${#args[@]} -ne 1 || ${args[0]:-} == -* ]]; then
    echo "usage: $0 DIR [--more] [--travel OUT]   (or $0 --group-pattern [--more])" >&2
    exit 2
fi
target_dir=${args[0]}
if [[ -n $more ]]; then
    SOURCES+=("${MORE_SOURCES[@]}")
fi

for tool in apt-get dpkg dpkg-deb; do
    if ! command -v "$tool" >/dev/null; then
        echo "error: $tool not found; this script needs a Debian or Ubuntu system" >&2
        exit 2
    fi
done
if [[ -n $more ]] && ! command -v unzip >/dev/null; then
    echo "error: unzip not found; install Debian's unzip for --more" >&2
    exit 2
fi
if [[ -n $travel_dir ]] && ! command -v opusenc >/dev/null; then
    echo "error: opusenc not found; install Debian's opus-tools for --travel" >&2
    exit 2
fi

work_dir=$(mktemp -d)
trap 'rm -rf "$work_dir"' EXIT
deb_dir=$target_dir/.debs
mkdir -p "$deb_dir"

for entry in "${SOURCES[@]}"; do
    IFS='|' read -r name package pattern style archive <<<"$entry"
    deb_file=$(find "$deb_dir" -maxdepth 1 -name "${package}_*.deb" | sort | tail -n 1)
    if [[ -z $deb_file ]]; then
        if ! (cd "$deb_dir" && apt-get download "$package") >"$work_dir/apt.log" 2>&1; then
            if grep -qE "Unable to locate package|has no installation candidate" "$work_dir/apt.log"; then
                echo "error: apt does not know $package; run 'apt-get update' (as root) once, then retry" >&2
                exit 2
            fi
            echo "error: apt-get download $package failed:" >&2
            cat "$work_dir/apt.log" >&2
            exit 1
        fi
        deb_file=$(find "$deb_dir" -maxdepth 1 -name "${package}_*.deb" | sort | tail -n 1)
    fi
    source_dir=$target_dir/$name
    version=$(dpkg-deb -f "$deb_file" Version)
    if grep -qxF "package: $package $version (Debian main)" "$source_dir/SOURCE.txt" 2>/dev/null; then
        echo "kept $name: already fetched from $(basename "$deb_file")"
        continue
    fi
    root=$work_dir/$package
    dpkg -x "$deb_file" "$root"

    if [[ -n $archive ]]; then
        # The music is packed in zip archives (a game's .pk3 or .zip) inside
        # the package: unpack the members that the pattern names (the part
        # after */unzipped/), then match them like any other file.
        mapfile -t archives < <(find "$root" -type f -path "$archive")
        if [[ ${#archives[@]} -eq 0 ]]; then
            echo "error: no archive matches $archive in $(basename "$deb_file")" >&2
            exit 1
        fi
        for zip_file in "${archives[@]}"; do
            unzip -qq -o "$zip_file" "${pattern#\*/unzipped/}" -d "$root/unzipped"
            rm "$zip_file"
        done
    fi
    mapfile -t audio_files < <(find "$root" -type f -path "$pattern" \( -name '*.opus' -o -name '*.ogg' \) | sort)
    if [[ ${#audio_files[@]} -eq 0 ]]; then
        echo "error: no .opus or .ogg files match $pattern in $(basename "$deb_file")" >&2
        exit 1
    fi
    # Copying flat would silently overwrite two tracks that share a name.
    duplicates=$(printf '%s\n' "${audio_files[@]}" | xargs -d '\n' -n 1 basename | sort | uniq -d)
    if [[ -n $duplicates ]]; then
        echo "error: several music files of $package share these names: $duplicates" >&2
        exit 1
    fi
    copyright=$root/usr/share/doc/$package/copyright
    if [[ ! -f $copyright ]]; then
        echo "error: $(basename "$deb_file") has no copyright file; not using music without a licence" >&2
        exit 1
    fi

    rm -rf "$source_dir"
    mkdir -p "$source_dir"
    cp "${audio_files[@]}" "$source_dir/"
    cp "$copyright" "$source_dir/COPYRIGHT"
    {
        echo "source: $name"
        echo "package: $package $version (Debian main)"
        echo "style: $style"
        echo "files: ${#audio_files[@]}"
        echo "licence: see COPYRIGHT; its License lines:"
        grep -E '^(License:|  *License:)' "$copyright" | sort | uniq -c | sed 's/^/  /' || true
    } >"$source_dir/SOURCE.txt"
    rm -rf "$root"
    mib=$(du -sm "$source_dir" | cut -f1)
    echo "fetched $name: ${#audio_files[@]} files ($mib MiB) from $(basename "$deb_file")"
done

if [[ -n $travel_dir ]]; then
    "${PYTHON:-python3}" - "$target_dir" "$travel_dir" <<'EOF'
"""Write 16 kHz mono 16 kbit/s Opus copies of every music file, and the licences beside them."""
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from audiosort import audio

source_root, travel_root = Path(sys.argv[1]), Path(sys.argv[2])
with tempfile.TemporaryDirectory() as scratch:
    wav = Path(scratch) / "track.wav"
    for root, file in audio.find_audio_files([source_root]):
        target = travel_root / file.relative_to(root).with_suffix(".opus")
        target.parent.mkdir(parents=True, exist_ok=True)
        for extra in ("COPYRIGHT", "SOURCE.txt"):
            if (file.parent / extra).is_file():
                shutil.copy(file.parent / extra, target.parent / extra)
        audio.write_wav(wav, audio.load(file, sample_rate=16000), sample_rate=16000)
        subprocess.run(["opusenc", "--quiet", "--bitrate", "16", str(wav), str(target)], check=True)
EOF
    echo "travel copies: $(du -sm "$travel_dir" | cut -f1) MiB in $travel_dir"
fi
if [[ -n $more ]]; then
    GROUP_PATTERN="$GROUP_PATTERN|$MORE_GROUP_PATTERN"
fi
echo "group pattern for prepare: $GROUP_PATTERN"
