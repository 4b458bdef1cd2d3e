#!/usr/bin/env bash
# A short tour of duplicity-ng on a throw-away tree: full backup, change, incremental,
# status, listing, restore (compared with the source), verify. Everything happens in a
# temporary directory that is removed at the end.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$REPO/scripts/setup.sh"

DNG="$REPO/.venv/bin/duplicity-ng"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/duplicity-ng-demo.XXXXXX")"
# 0555 directories are fine for root but would stop a plain rm -rf for anyone else.
trap 'chmod -R u+w "$WORK" 2>/dev/null; rm -rf "$WORK"' EXIT

SRC="$WORK/source"
TARGET="file://$WORK/backend"
RESTORED="$WORK/restored"
# Keep the demo's local cache (manifests, signatures) out of ~/.cache.
export XDG_CACHE_HOME="$WORK/cache"

if [ -t 1 ]; then BOLD=$'\033[1m' PLAIN=$'\033[0m'; else BOLD='' PLAIN=''; fi
step() { printf '\n%s==> %s%s\n' "$BOLD" "$*" "$PLAIN"; }

run() {
    printf '$ duplicity-ng %s\n' "$*"
    "$DNG" "$@"
}

step "Make a small source tree in $SRC"
mkdir -p "$SRC/docs" "$SRC/photos" "$SRC/empty"
printf 'Dear diary,\ntoday I made a backup.\n' >"$SRC/docs/diary.txt"
seq 1 20000 >"$SRC/docs/numbers.txt"
head -c 300000 /dev/urandom >"$SRC/photos/holiday.jpg"
printf '#!/bin/sh\necho hello\n' >"$SRC/run.sh"
chmod 0755 "$SRC/run.sh"
ln -s docs/diary.txt "$SRC/latest"
# Date everything an hour back so the changes below get a visibly different mtime.
find "$SRC" -exec touch -h -d '1 hour ago' {} +
ls -lR "$SRC"

step "Full backup (no encryption, so no passphrase is needed)"
run full --no-encryption "$SRC" "$TARGET"

# duplicity's set names have one-second resolution: the next backup must be a later second.
sleep 1

step "Change the source: append, rewrite part of a file, delete, add, chmod"
printf 'and then I changed it.\n' >>"$SRC/docs/diary.txt"
head -c 4096 /dev/urandom | dd of="$SRC/photos/holiday.jpg" bs=4096 seek=10 conv=notrunc status=none
rm "$SRC/docs/numbers.txt"
printf 'new\n' >"$SRC/docs/new.txt"
chmod 0700 "$SRC/run.sh"

step "Incremental backup (only the changes, as librsync deltas)"
run incremental --no-encryption "$SRC" "$TARGET"

step "Files on the backend"
ls -l "$WORK/backend"

step "Collection status"
run collection-status --no-encryption "$TARGET"

step "Files in the latest backup"
run list-current-files --no-encryption "$TARGET"

step "Restore the latest backup into $RESTORED"
run restore --no-encryption "$TARGET" "$RESTORED"

step "Compare the restored tree with the source (diff -r)"
diff -r "$SRC" "$RESTORED"
echo "no differences in contents"

step "Compare metadata too (type, mode, mtime, size, content, link target)"
PYTHONPATH="$REPO/tests" "$REPO/.venv/bin/python" -c '
import os, sys
from treecompare import compare_trees
diffs = compare_trees(sys.argv[1], sys.argv[2], check_owner=os.geteuid() == 0)
print("\n".join(diffs) or "no differences in metadata")
sys.exit(1 if diffs else 0)
' "$SRC" "$RESTORED"

step "Verify the backup against the source, contents included"
run verify --compare-data --no-encryption "$TARGET" "$SRC"

step "Done: every step succeeded"
