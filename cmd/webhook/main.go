// Command webhook is the tekton-oci-transport admission webhook server. It
// also converts PipelineRun files offline:
//
//	webhook [serve] [flags]               serve admission (the default)
//	webhook convert -f run.yaml [-f ...]  print the converted run; exit 0 converted,
//	                                      3 left unchanged, 1 bad input
package main

import (
	"fmt"
	"io"
	"os"
	"strings"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run dispatches to a subcommand and returns the exit code.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return serve(args, stdout, stderr)
	case "convert":
		return runConvert(args, stdin, stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, version)
		return 0
	default:
		// a typo must not start a server
		fmt.Fprintf(stderr, "webhook: unknown command %q: want serve (the default), convert or version\n", cmd)
		return 2
	}
}
