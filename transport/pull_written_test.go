package transport

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestWrittenSetAgainstMap drives writtenSet and the map[string]writer it
// replaced (issue 16) with the same random operations: same lookups, same
// paths removed (and with what wrote them) by deletions, same live paths at
// the end. Components are few and overlapping ("a", "a-b", "ab") so that
// names repeat across directories and prefixes that are not ancestors
// ("a" of "ab") come up.
func TestWrittenSetAgainstMap(t *testing.T) {
	comps := []string{"a", "b", "ab", "a-b", "c", "a.b"}
	for seed := range uint64(20) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 16))
			randPath := func() string {
				n := 1 + r.IntN(4)
				parts := make([]string, n)
				for i := range parts {
					parts[i] = comps[r.IntN(len(comps))]
				}
				return strings.Join(parts, "/")
			}
			ws := newWrittenSet()
			ref := map[string]writer{}
			for op := range 3000 {
				switch k := r.IntN(10); {
				case k < 6:
					p, w := randPath(), writer{r.IntN(5), r.IntN(7)}
					require.True(t, ws.set(p, w))
					ref[p] = w
				case k < 9:
					p := randPath()
					got, ok := ws.get(p)
					want, wok := ref[p]
					require.Equal(t, wok, ok, "get %q at op %d", p, op)
					require.Equal(t, want, got, "get %q", p)
				default:
					dels := []string{randPath()}
					if r.IntN(2) == 0 {
						dels = append(dels, randPath())
					}
					if r.IntN(50) == 0 {
						dels = append(dels, "") // the root: everything
					}
					want := map[string]writer{}
					for q, w := range ref {
						for _, p := range dels {
							if under(q, p) {
								want[q] = w
								delete(ref, q)
								break
							}
						}
					}
					got := map[string]writer{}
					ws.deleteUnder(dels, func(q string, w writer) {
						_, dup := got[q]
						require.False(t, dup, "%q removed twice", q)
						got[q] = w
					})
					require.Equal(t, want, got, "deleteUnder %q", dels)
				}
			}
			var live []string
			for _, k := range ws.sorted() {
				live = append(live, ws.path(&ws.ents[k]))
			}
			var want []string
			for p := range ref {
				want = append(want, p)
			}
			slices.Sort(want)
			require.ElementsMatch(t, want, live)
			require.Equal(t, len(ref), ws.live)
		})
	}
}

// TestWrittenSetGrows: many entries (several table doublings), each found
// with what last wrote it; sorted groups a directory's entries by name.
func TestWrittenSetGrows(t *testing.T) {
	ws := newWrittenSet()
	const n = 20000
	for i := range n {
		require.True(t, ws.set(fmt.Sprintf("pkg%d/file%d.go", i%97, i), writer{0, i}))
	}
	for i := range n {
		require.True(t, ws.set(fmt.Sprintf("pkg%d/file%d.go", i%97, i), writer{1, i})) // rewritten: no new entry
	}
	require.Len(t, ws.ents, n)
	require.Equal(t, n, ws.live)
	for i := range n {
		w, ok := ws.get(fmt.Sprintf("pkg%d/file%d.go", i%97, i))
		require.True(t, ok)
		require.Equal(t, writer{1, i}, w)
	}
	_, ok := ws.get("pkg1/file0.go")
	require.False(t, ok)
	_, ok = ws.get("pkg1")
	require.False(t, ok)
	s := ws.sorted()
	require.Len(t, s, n)
	for i := 1; i < len(s); i++ {
		a, b := &ws.ents[s[i-1]], &ws.ents[s[i]]
		if a.dir == b.dir {
			require.Less(t, ws.name(a), ws.name(b))
		} else {
			require.Less(t, ws.dirs[a.dir], ws.dirs[b.dir])
		}
	}
}

// TestWrittenSetRevives: a deleted path written again is there again, once.
func TestWrittenSetRevives(t *testing.T) {
	ws := newWrittenSet()
	require.True(t, ws.set("d/x", writer{0, 0}))
	require.True(t, ws.set("d", writer{0, 0}))
	require.True(t, ws.set("dx", writer{0, 0}))
	var gone []string
	ws.deleteUnder([]string{"d"}, func(p string, _ writer) { gone = append(gone, p) })
	require.ElementsMatch(t, []string{"d", "d/x"}, gone)
	_, ok := ws.get("d/x")
	require.False(t, ok)
	_, ok = ws.get("dx")
	require.True(t, ok, "dx is not below d")
	require.True(t, ws.set("d/x", writer{1, 2}))
	w, ok := ws.get("d/x")
	require.True(t, ok)
	require.Equal(t, writer{1, 2}, w)
	require.Len(t, ws.ents, 3)
	require.Equal(t, 2, ws.live)
}
