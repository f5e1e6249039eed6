// Package sshx is the SSH transport shared by the inventory scanner and the
// executor: it runs shell scripts on hosts over golang.org/x/crypto/ssh.
//
// Host keys are always verified: against the key pinned on the target, the
// pool's bastion pins, or known_hosts files. Trust on first use happens only
// when a target allows it, and the key accepted is reported so the caller can
// pin it. A mismatch is a *HostKeyMismatchError.
//
// A Pool keeps one connection per host and multiplexes sessions on it, bounds
// the number of connections, closes idle ones and redials dropped ones.
//
// # How a script runs
//
// The script never appears on a command line. The remote command is a fixed
// wrapper,
//
//	exec [sudo -n] sh -s patchfleet-run:<token>
//
// sshd starts the login shell at the head of a session and process group of
// its own, and exec keeps sh there, so the script has a group of its own
// without another process. The first line sh reads prints the group id on the
// first line of stdout (stripped from the Result); the script follows on
// stdin, sent as one brace group followed by </dev/null, so the
// shell parses it whole before running it and commands inside it never read
// the rest of the script from stdin (their stdin is /dev/null).
//
// Closing an SSH session does not stop what it started: OpenSSH hands no
// signal to a command without a terminal, and "signal" requests reach only the
// session's direct child, not a pipeline or sudo's children. So when the
// context of Run ends, the pool opens a second session on the same connection
// and kills the script's whole process group with SIGKILL (through sudo -n
// when the script ran under sudo). The kill first checks that the group leader
// still carries the run's random token in its command line, so a recycled pid
// is never hit, nor a group the script does not lead.
//
// # Memory
//
// Measured against OpenSSH (TestSshx/Memory in tools/e2e), a connection
// costs the client about 35 KiB of heap and goroutine stacks, and a running
// command about 20 KiB more: 1,000 commands on 1,000 hosts take about 55 MB.
// SSH channel windows are credit, not buffers; output is read in 4 KiB
// chunks as it arrives. On top comes captured output, at most
// Command.MaxOutput bytes per stream (DefaultMaxOutput, 64 KiB), allocated
// as output arrives.
//
// Remote hosts need a POSIX sh, /proc, and sudo when a target uses it: every
// Debian and Ubuntu server has them.
package sshx
