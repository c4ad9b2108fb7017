// Command brokenstep is the equivalence harness's saboteur: it stands in for
// oci-transport-step in a test-only image and, before every push, removes the
// baseline that the pull step left, so the push sees no deletions (a
// transport that forgets deletions). The harness must then report a diff.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

const real = "/usr/local/bin/oci-transport-step.real"

func main() {
	args := os.Args[1:]
	if len(args) > 0 && args[0] == "push" {
		for i, a := range args {
			var state string
			switch {
			case strings.HasPrefix(a, "--state="):
				state = strings.TrimPrefix(a, "--state=")
			case a == "--state" && i+1 < len(args):
				state = args[i+1]
			}
			if state != "" {
				_ = os.Remove(filepath.Join(state, "baseline.v2"))
				fmt.Fprintln(os.Stderr, "brokenstep: baseline removed, deletions will be lost")
			}
		}
	}
	err := syscall.Exec(real, append([]string{real}, args...), os.Environ())
	fmt.Fprintln(os.Stderr, "brokenstep:", err)
	os.Exit(1)
}
