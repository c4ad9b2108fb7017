// Command webhook is the tekton-oci-transport admission webhook server. It
// also converts PipelineRun files offline:
//
//	webhook [serve] [flags]               serve admission (the default)
//	webhook convert -f run.yaml [-f ...]  print the converted run; exit 0 converted,
//	                                      3 left unchanged, 1 bad input
package main

import (
	"fmt"
	"os"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	args := os.Args[1:]
	cmd := "serve"
	if len(args) > 0 && (args[0] == "serve" || args[0] == "convert" || args[0] == "version") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "convert":
		os.Exit(runConvert(args, os.Stdin, os.Stdout, os.Stderr))
	case "version":
		fmt.Println(version)
	default:
		os.Exit(runServe(args))
	}
}
