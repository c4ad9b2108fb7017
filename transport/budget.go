package transport

import "unsafe"

// DefaultMemoryBudget sizes a push given no budget: the memory limit the
// chart gives the injected steps.
const DefaultMemoryBudget = 128 << 20

// What the parts of the push pipeline hold, measured with pprof (README,
// "Memory"): a compression worker its zstd encoder (about 1.7 MiB: the
// 1 MiB window's history, 1.1 MiB with WithLowerEncoderMem, its hash table
// and block buffers); a block of the arena blockBytes; a layer
// in flight its sink's buffer (the first chunk), its tar copy buffer
// (256 KiB) and its connection's buffers (2x256 KiB).
const (
	workerMemory = 7 << 18
	layerMemory  = 3 << 18
	// The sink's buffer: a layer that fits is uploaded whole after a HEAD,
	// and in chunks mode it is the chunk (a 1 GiB push took 2.9-5.2 s in
	// 2 MiB chunks, as 2.5-3.7 s streamed; 4 and 8 MiB chunks cost 2 and 14
	// MiB more at --concurrency 4).
	defaultChunk = 2 << 20
	minChunk     = 1 << 20
	// recordMemory is what a changed path holds while its layer is
	// written: its record (80 bytes on 64-bit) and its path, counted as a
	// 64-byte allocation (most workspace paths are shorter; the 200 000-file
	// push measured 90-93 MiB peak, README "Memory").
	recordMemory = int64(unsafe.Sizeof(record{})) + 64
)

// pushMemory is how a push spends its memory budget.
type pushMemory struct {
	concurrency int // layers in flight
	workers     int // blocks compressed at once
	blocks      int // blocks of the compression arena
	chunk       int // upload chunk, buffered per layer in flight
}

// cost is what the pipeline holds at most.
func (m pushMemory) cost() int64 {
	return int64(m.workers)*workerMemory + int64(m.blocks)*blockBytes + int64(m.concurrency)*int64(m.chunk+layerMemory)
}

// planPushMemory gives the compression and upload pipeline a quarter of
// what the budget leaves after the records of the changed paths. The rest
// is for what does not depend on these settings: the Go runtime and the
// binary (about 10 MiB) and the garbage collector's headroom (the step sets
// GOMEMLIMIT to 3/4 of the budget). Over its share, the pipeline gives up,
// in this order: spare blocks (each worker keeps one queued), half of the
// chunk, workers above 2, layers in flight, the second worker. With the
// default 128 MiB, --concurrency 4 and 2 cores nothing is given up below
// about 25 000 changed paths.
func planPushMemory(budget int64, records, concurrency, cpus int) pushMemory {
	if budget <= 0 {
		budget = DefaultMemoryBudget
	}
	share := (budget - int64(records)*recordMemory) / 4
	m := pushMemory{concurrency: max(concurrency, 1), workers: max(cpus, 1), chunk: defaultChunk}
	m.blocks = 2*m.workers + m.concurrency
	for m.cost() > share && m.blocks > m.workers+m.concurrency {
		m.blocks--
	}
	if m.cost() > share {
		m.chunk = minChunk
	}
	for m.cost() > share && m.workers > 2 {
		m.workers--
		m.blocks = m.workers + m.concurrency
	}
	for m.cost() > share && m.concurrency > 1 {
		m.concurrency--
		m.blocks = m.workers + m.concurrency
	}
	for m.cost() > share && m.workers > 1 {
		m.workers--
		m.blocks = m.workers + m.concurrency
	}
	return m
}
