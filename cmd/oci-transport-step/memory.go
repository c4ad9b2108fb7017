package main

import (
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// cgroupMemoryFiles hold the container's memory limit: cgroup v2, then v1.
var cgroupMemoryFiles = []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}

// setMemoryLimit gives the Go runtime a soft limit of 3/4 of the container's
// memory limit when GOMEMLIMIT is not set (the chart's webhook does the same
// through the Downward API), so the garbage collector keeps the step under
// its limit instead of letting the heap grow until the kernel kills it. It
// returns the limit set, 0 for none.
func setMemoryLimit() int64 {
	if os.Getenv("GOMEMLIMIT") != "" {
		return 0
	}
	for _, f := range cgroupMemoryFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if limit := parseCgroupLimit(string(b)); limit > 0 {
			soft := limit / 4 * 3
			debug.SetMemoryLimit(soft)
			return soft
		}
		return 0
	}
	return 0
}

// parseCgroupLimit reads a cgroup memory limit file: bytes, or "max" (v2)
// or a huge number (v1) for none (0).
func parseCgroupLimit(s string) int64 {
	v, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || v <= 0 || v >= 1<<60 {
		return 0
	}
	return v
}
