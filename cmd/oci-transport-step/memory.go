package main

import (
	"flag"
	"os"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/tekton-oci-transport/tekton-oci-transport/transport"
)

// cgroupMemoryFiles hold the container's memory limit: cgroup v2, then v1.
var cgroupMemoryFiles = []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}

// memoryBudgetFlag registers --memory-budget on fs.
func memoryBudgetFlag(fs *flag.FlagSet) *int64 {
	var v int64
	fs.Func("memory-budget", "memory the step may use: sizes the push's buffers and may lower its concurrency, "+
		"and sets GOMEMLIMIT to 3/4 of it when unset (default: the container's memory limit, else "+
		formatSize(transport.DefaultMemoryBudget)+" for the push)", sizeFlag(&v))
	return &v
}

// setMemoryLimit returns the memory budget, the flagged one or the
// container's cgroup memory limit, the smaller of the two when both are set
// (0 for none: the push then sizes itself for
// transport.DefaultMemoryBudget), and gives the Go runtime a soft limit
// of 3/4 of it when GOMEMLIMIT is not set (the chart's webhook does the
// same through the Downward API), so the garbage collector keeps the step
// under its limit instead of letting the heap grow until the kernel kills
// it. soft is the limit set, 0 for none.
func setMemoryLimit(flagged int64) (budget, soft int64) {
	budget = flagged
	if limit := cgroupLimit(); limit > 0 && (budget <= 0 || limit < budget) {
		budget = limit
	}
	if budget <= 0 || os.Getenv("GOMEMLIMIT") != "" {
		return budget, 0
	}
	soft = budget / 4 * 3
	debug.SetMemoryLimit(soft)
	return budget, soft
}

// cgroupLimit is the container's memory limit, 0 for none.
func cgroupLimit() int64 {
	for _, f := range cgroupMemoryFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		return parseCgroupLimit(string(b))
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
