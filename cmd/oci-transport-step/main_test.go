package main

import (
	"bytes"
	"context"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestUsageExitCodes(t *testing.T) {
	for _, args := range [][]string{
		nil,
		{"frobnicate"},
		{"pull", "--no-such-flag"},
		{"pull", "--mount", t.TempDir(), "--state", t.TempDir(), "--from", "a"}, // no --registry
		{"push", "--registry", "r", "--repository", "x", "--tag", "bad tag", "--mount", t.TempDir()},
		{"pull", "--registry", "r", "--repository", "x", "--from", "a", "--subpath", "x", "--mount", t.TempDir(), "--state", t.TempDir()},
		{"pull", "--registry", "r", "--repository", "x", "--mount", t.TempDir(), "--subpath", "../up", "--state", t.TempDir()},
		{"push", "--layer-size", "lots"},
		{"pull", "extra-arg"},
	} {
		var stderr bytes.Buffer
		require.Equal(t, 2, run(context.Background(), args, &stderr), "%q: %s", args, stderr.String())
	}
}

func TestEmptyPullNeedsNoRegistry(t *testing.T) {
	var stderr bytes.Buffer
	code := run(context.Background(), []string{"pull", "--registry", "127.0.0.1:1", "--plain-http", "--repository", "a/b",
		"--from", "", "--mount", t.TempDir(), "--state", t.TempDir()}, &stderr)
	require.Equal(t, 0, code, stderr.String())
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"10": 10, "64Mi": 64 << 20, "2G": 2e9, "1Ki": 1024} {
		got, err := parseSize(in)
		require.NoError(t, err)
		require.Equal(t, want, got)
	}
	_, err := parseSize("-1")
	require.Error(t, err)
	for _, v := range []int64{1, 1000, 1 << 10, 3 << 20, 64 << 30, 1<<20 + 1} {
		got, err := parseSize(formatSize(v))
		require.NoError(t, err)
		require.Equal(t, v, got, formatSize(v))
	}
	require.Equal(t, "64Mi", formatSize(64<<20))
}
