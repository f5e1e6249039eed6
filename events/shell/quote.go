// Package shell quotes strings for POSIX sh: the one quoting every command line Patchfleet sends
// to a host goes through.
package shell

import "strings"

// Quote returns s as one POSIX shell word: wrapped in single quotes, inside
// which nothing is special, with each single quote of s written as close
// quote, backslash-escaped quote, reopen:
//
//	it's  ->  'it'\''s'
//
// Any string without a NUL byte survives unchanged (no shell word can hold a
// NUL).
func Quote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
