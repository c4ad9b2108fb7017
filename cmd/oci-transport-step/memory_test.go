package main

import (
	"flag"
	"io"
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
	budget, soft := setMemoryLimit(0)
	require.Equal(t, int64(128<<20), budget, "the container's limit")
	require.Equal(t, int64(96<<20), soft, "3/4 of 128 MiB")
	require.Equal(t, int64(96<<20), debug.SetMemoryLimit(-1))

	budget, soft = setMemoryLimit(64 << 20)
	require.Equal(t, int64(64<<20), budget, "a smaller budget than the limit")
	require.Equal(t, int64(48<<20), soft)
	budget, _ = setMemoryLimit(1 << 30)
	require.Equal(t, int64(128<<20), budget, "never more than the container's limit")

	t.Setenv("GOMEMLIMIT", "1GiB")
	budget, soft = setMemoryLimit(0)
	require.Equal(t, int64(128<<20), budget, "the budget still sizes the push")
	require.Zero(t, soft, "an explicit GOMEMLIMIT wins")
}

func TestMemoryBudgetWithoutALimit(t *testing.T) {
	defer func(files []string) { cgroupMemoryFiles = files }(cgroupMemoryFiles)
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	f := filepath.Join(t.TempDir(), "memory.max")
	require.NoError(t, os.WriteFile(f, []byte("max\n"), 0o644))
	cgroupMemoryFiles = []string{f}
	t.Setenv("GOMEMLIMIT", "")
	before := debug.SetMemoryLimit(-1)
	budget, soft := setMemoryLimit(0)
	require.Zero(t, budget, "no limit, no flag: the push sizes itself for its default")
	require.Zero(t, soft)
	require.Equal(t, before, debug.SetMemoryLimit(-1), "GOMEMLIMIT untouched")

	fs := flag.NewFlagSet("push", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	v := memoryBudgetFlag(fs)
	require.NoError(t, fs.Parse([]string{"--memory-budget", "256Mi"}))
	budget, soft = setMemoryLimit(*v)
	require.Equal(t, int64(256<<20), budget)
	require.Equal(t, int64(192<<20), soft, "a flagged budget sets GOMEMLIMIT like a container limit")
	require.Error(t, fs.Parse([]string{"--memory-budget", "lots"}))
}
