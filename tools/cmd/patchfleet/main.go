// Command patchfleet is the operator command line (see tools/cli). Shell completion:
// `patchfleet completion bash|zsh|fish`.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/patchfleet/patchfleet/tools/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, &cli.App{Out: os.Stdout, Err: os.Stderr, Env: os.LookupEnv}, os.Args[1:])
	stop()
	os.Exit(code)
}
