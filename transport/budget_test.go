package transport

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestPlanPushMemory(t *testing.T) {
	for _, c := range []struct {
		name                       string
		budget                     int64
		records, concurrency, cpus int
		want                       pushMemory
	}{
		{"the default budget on 2 cores gives up nothing", 0, 0, 4, 2, pushMemory{concurrency: 4, workers: 2, blocks: 8, chunk: 2 << 20}},
		{"a 128 MiB container is the default", 128 << 20, 0, 4, 2, pushMemory{concurrency: 4, workers: 2, blocks: 8, chunk: 2 << 20}},
		{"spare blocks go first", 112 << 20, 0, 4, 2, pushMemory{concurrency: 4, workers: 2, blocks: 6, chunk: 2 << 20}},
		{"64 MiB: smaller chunks, fewer layers in flight", 64 << 20, 0, 4, 2, pushMemory{concurrency: 2, workers: 2, blocks: 4, chunk: 1 << 20}},
		{"many cores: workers above 2 go before layers", 128 << 20, 0, 4, 16, pushMemory{concurrency: 4, workers: 4, blocks: 8, chunk: 1 << 20}},
		{"a big budget uses the cores", 1 << 30, 0, 4, 16, pushMemory{concurrency: 4, workers: 16, blocks: 36, chunk: 2 << 20}},
		{"too small for anything: one of each", 8 << 20, 0, 4, 8, pushMemory{concurrency: 1, workers: 1, blocks: 2, chunk: 1 << 20}},
		{"--concurrency 1", 0, 0, 1, 2, pushMemory{concurrency: 1, workers: 2, blocks: 5, chunk: 2 << 20}},
		{"20 000 changed paths: nothing given up", 0, 20000, 4, 2, pushMemory{concurrency: 4, workers: 2, blocks: 8, chunk: 2 << 20}},
		{"200 000 changed paths take 27 MiB of the budget", 0, 200000, 4, 2, pushMemory{concurrency: 4, workers: 2, blocks: 6, chunk: 1 << 20}},
		{"more records than budget: one of each", 128 << 20, 1 << 20, 4, 2, pushMemory{concurrency: 1, workers: 1, blocks: 2, chunk: 1 << 20}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := planPushMemory(c.budget, c.records, c.concurrency, c.cpus)
			require.Equal(t, c.want, got)
			b := c.budget
			if b == 0 {
				b = DefaultMemoryBudget
			}
			if got.concurrency > 1 || got.workers > 1 {
				require.LessOrEqual(t, got.cost(), (b-int64(c.records)*recordMemory)/4, "within a quarter of what the records leave")
			}
			require.LessOrEqual(t, got.concurrency, max(c.concurrency, 1), "never above --concurrency")
			require.GreaterOrEqual(t, got.blocks, got.workers+1, "a worker always has a block to fill")
		})
	}
}

// More budget never gives less of anything, more changed paths never more.
func TestPlanPushMemoryIsMonotonic(t *testing.T) {
	for _, cpus := range []int{1, 2, 4, 16, 64} {
		prev := planPushMemory(1<<20, 0, 4, cpus)
		for b := int64(2 << 20); b <= 2<<30; b += 1 << 20 {
			m := planPushMemory(b, 0, 4, cpus)
			require.GreaterOrEqual(t, m.concurrency, prev.concurrency, "budget %d, %d cores", b, cpus)
			require.GreaterOrEqual(t, m.chunk, prev.chunk, "budget %d, %d cores", b, cpus)
			require.GreaterOrEqual(t, m.cost(), prev.cost(), "budget %d, %d cores", b, cpus)
			prev = m
		}
		prev = planPushMemory(0, 0, 4, cpus)
		for n := 10000; n <= 1000000; n += 10000 {
			m := planPushMemory(0, n, 4, cpus)
			require.LessOrEqual(t, m.concurrency, prev.concurrency, "%d paths, %d cores", n, cpus)
			require.LessOrEqual(t, m.cost(), prev.cost(), "%d paths, %d cores", n, cpus)
			prev = m
		}
	}
}

// The arena hands out at most its size; a writer waits for a block that
// another's member has released.
func TestBlockArenaBound(t *testing.T) {
	a := newBlockArena(1, 3)
	var got []*block
	for range 3 {
		got = append(got, a.get())
	}
	done := make(chan *block)
	go func() { done <- a.get() }()
	select {
	case <-done:
		t.Fatal("a fourth block from an arena of three")
	default:
	}
	a.put(got[0])
	b := <-done
	require.Same(t, got[0], b, "the block put back is reused")
	require.Empty(t, b.src)
	require.Zero(t, b.out.Len())
	require.Equal(t, 3, a.made)
}
