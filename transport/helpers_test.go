package transport

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, nil))
}

// snapshot describes a tree: type, mode, size, content hash, link target
// and (for files) mtime.
func snapshot(t testing.TB, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "." {
			return nil
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			l, _ := os.Readlink(p)
			out[rel] = "link " + l
		case fi.IsDir():
			out[rel] = fmt.Sprintf("dir %v", fi.Mode())
		default:
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			out[rel] = fmt.Sprintf("file %v %d %x %d", fi.Mode(), fi.Size(), sha256.Sum256(data), fi.ModTime().UnixNano())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func writeFile(t testing.TB, path, content string, mode fs.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func randomFile(t testing.TB, path string, size int64, seed uint64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)})
	buf := make([]byte, 1<<20)
	for size > 0 {
		n := min(int64(len(buf)), size)
		r.Read(buf[:n])
		if _, err := f.Write(buf[:n]); err != nil {
			t.Fatal(err)
		}
		size -= n
	}
}

var fixedTime = time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC)

func statT(fi os.FileInfo) *syscall.Stat_t { return fi.Sys().(*syscall.Stat_t) }

// runTestAs runs this test binary's test named test as another user, with
// the JSON of arg in the environment variable env, from dir (which that user
// must be able to enter), and returns its output. The binary is copied into
// dir first: go test's build directory is root's alone. REGISTRY_BIN is not
// passed: the child uses the caller's registry and starts none.
func runTestAs(t *testing.T, dir, test, env string, arg any, cred *syscall.Credential) string {
	t.Helper()
	b, err := json.Marshal(arg)
	require.NoError(t, err)
	bin := filepath.Join(dir, "transport.test")
	if _, err := os.Stat(bin); err != nil {
		self, err := os.ReadFile(os.Args[0])
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(bin, self, 0o755))
	}
	child := exec.Command(bin, "-test.run=^"+test+"$", "-test.count=1")
	child.Dir = dir
	child.Env = []string{env + "=" + string(b), "PATH=" + os.Getenv("PATH")}
	child.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	out, err := child.CombinedOutput()
	require.NoError(t, err, "%s", out)
	return string(out)
}
