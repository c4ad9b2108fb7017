package main

import (
	"os"
	"path/filepath"
	"runtime/debug"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseCgroupLimit(t *testing.T) {
	for in, want := range map[string]int64{
		"134217728\n":         128 << 20,
		"max\n":               0, // cgroup v2: no limit
		"9223372036854771712": 0, // cgroup v1: no limit
		"":                    0,
		"garbage":             0,
	} {
		require.Equal(t, want, parseCgroupLimit(in), "%q", in)
	}
}

func TestSetMemoryLimitFromTheCgroup(t *testing.T) {
	defer func(files []string) { cgroupMemoryFiles = files }(cgroupMemoryFiles)
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	f := filepath.Join(t.TempDir(), "memory.max")
	require.NoError(t, os.WriteFile(f, []byte("134217728\n"), 0o644))
	cgroupMemoryFiles = []string{filepath.Join(t.TempDir(), "absent"), f}
	t.Setenv("GOMEMLIMIT", "")
	require.Equal(t, int64(96<<20), setMemoryLimit(), "3/4 of 128 MiB")
	require.Equal(t, int64(96<<20), debug.SetMemoryLimit(-1))
	t.Setenv("GOMEMLIMIT", "1GiB")
	require.Zero(t, setMemoryLimit(), "an explicit GOMEMLIMIT wins")
}
