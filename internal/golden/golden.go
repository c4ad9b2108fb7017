// Package golden is the one way this repository's tests compare output with
// a file under testdata: `go test ./<package> -update` rewrites the files
// from the current output (review the diff), otherwise a difference fails
// the test with the first differing lines and how to update.
package golden

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files from the current output (review the diff)")

// Updating says whether this run rewrites golden files (-update).
func Updating() bool { return *update }

// Check compares got with the file at path, or writes it under -update
// (creating its folder). hint says how to update, e.g. "make manifests";
// empty: "go test <the test's package> -update".
func Check(t testing.TB, path string, got []byte, hint string) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if hint == "" {
		hint = "go test -update in this package"
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run %s to create it)", err, hint)
	}
	if !bytes.Equal(want, got) {
		t.Errorf("%s differs from the output (run %s and review the diff):\n%s", path, hint, Diff(string(want), string(got)))
	}
}

// Diff shows the first lines where want and got differ, three lines of
// context around them: enough to see what changed.
func Diff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < len(w) || i < len(g); i++ {
		var a, b string
		if i < len(w) {
			a = w[i]
		}
		if i < len(g) {
			b = g[i]
		}
		if a != b {
			lo, hi := max(0, i-3), i+4
			var sb strings.Builder
			for j := lo; j < hi; j++ {
				if j < len(w) {
					fmt.Fprintf(&sb, "-%4d %s\n", j+1, w[j])
				}
			}
			for j := lo; j < hi; j++ {
				if j < len(g) {
					fmt.Fprintf(&sb, "+%4d %s\n", j+1, g[j])
				}
			}
			return sb.String()
		}
	}
	return "(no line differs)"
}
