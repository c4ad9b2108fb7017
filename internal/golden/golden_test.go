package golden

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// recorder is a testing.TB that keeps what Check reports.
type recorder struct {
	testing.TB
	errors []string
	fatal  bool
}

func (r *recorder) Helper() {}
func (r *recorder) Errorf(format string, a ...any) {
	r.errors = append(r.errors, fmt.Sprintf(format, a...))
}
func (r *recorder) Fatalf(format string, a ...any) {
	r.fatal = true
	r.errors = append(r.errors, fmt.Sprintf(format, a...))
}

func TestCheck(t *testing.T) {
	if Updating() {
		t.Skip("-update rewrites files; this test checks comparing")
	}
	path := filepath.Join(t.TempDir(), "want.yaml")
	require.NoError(t, os.WriteFile(path, []byte("a: 1\nb: 2\nc: 3\n"), 0o644))

	r := &recorder{TB: t}
	Check(r, path, []byte("a: 1\nb: 2\nc: 3\n"), "")
	require.Empty(t, r.errors, "the same bytes pass")

	r = &recorder{TB: t}
	Check(r, path, []byte("a: 1\nb: 20\nc: 3\n"), "make it")
	require.Len(t, r.errors, 1)
	require.Contains(t, r.errors[0], "run make it")
	require.Contains(t, r.errors[0], "-   2 b: 2\n")
	require.Contains(t, r.errors[0], "+   2 b: 20\n")

	r = &recorder{TB: t}
	Check(r, filepath.Join(t.TempDir(), "missing.yaml"), []byte("x"), "")
	require.True(t, r.fatal, "a missing file is fatal")
	require.Contains(t, r.errors[0], "to create it")
}
