// Command floodgate runs the floodgate donation service and its tools.
package main

import (
	"context"
	"os"

	"github.com/floodgate/floodgate/internal/cli"
)

func main() {
	os.Exit(cli.Run(context.Background(), os.Args[1:], cli.Env{Stdout: os.Stdout, Stderr: os.Stderr}))
}
