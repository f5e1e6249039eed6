#!/bin/sh
# A provider for the replace tests: provider.sh DIR HOOK ARGS...
# provision hands out the hosts of DIR/pool (one JSON object per line) in order; every call
# is appended to DIR/calls; a hook fails while DIR/fail-HOOK exists and waits while
# DIR/block-HOOK exists.
dir=$1
hook=$2
shift 2
echo "$hook $*" >>"$dir/calls"
while [ -e "$dir/block-$hook" ]; do sleep 0.05; done
if [ -e "$dir/fail-$hook" ]; then
	echo "provider: $hook failed" >&2
	exit 1
fi
case $hook in
provision) sed -n "$(grep -c '^provision' "$dir/calls")p" "$dir/pool" ;;
switch | retire) echo "$hook done" ;;
*)
	echo "provider: unknown hook $hook" >&2
	exit 2
	;;
esac
