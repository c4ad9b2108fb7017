// Command benchdata generates the transport benchmark's data sets:
//
//	benchdata big DIR     512 MiB of random bytes (4 files) + 512 MiB of compressible text (8 files)
//	benchdata small DIR   20 000 small text files (0.5-4 KiB) in 200 directories
//	benchdata huge DIR    8 GiB: 4 GiB of random bytes (4 files of 1 GiB, each
//	                      bigger than a layer) + 4 GiB of text (32 files of 128 MiB)
//	benchdata many DIR    200 000 small text files (0.5-4 KiB) in 2 000 directories
//
// The content is deterministic (seeded), so runs are comparable.
package main

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
)

var words = []string{"pipeline", "task", "workspace", "artifact", "registry", "layer", "manifest", "digest",
	"kubernetes", "container", "step", "result", "param", "tekton", "release", "build", "test", "deploy",
	"error", "warning", "info", "debug", "func", "return", "if", "else", "for", "range", "package", "import",
	"the", "a", "of", "to", "and", "in", "is", "that", "with", "as", "on", "at", "by", "from"}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: benchdata big|small|huge|many DIR")
		os.Exit(2)
	}
	dir := os.Args[2]
	must(os.MkdirAll(dir, 0o755))
	switch os.Args[1] {
	case "big":
		for i := range 4 {
			random(filepath.Join(dir, fmt.Sprintf("random-%d.bin", i)), 128<<20, uint64(i))
		}
		for i := range 8 {
			text(filepath.Join(dir, fmt.Sprintf("text-%d.log", i)), 64<<20, uint64(100+i))
		}
	case "small":
		smallFiles(dir, 20000, 200)
	case "huge":
		for i := range 4 {
			random(filepath.Join(dir, fmt.Sprintf("random-%d.bin", i)), 1<<30, uint64(i))
		}
		for i := range 32 {
			text(filepath.Join(dir, fmt.Sprintf("text-%02d.log", i)), 128<<20, uint64(100+i))
		}
	case "many":
		smallFiles(dir, 200000, 2000)
	default:
		fmt.Fprintln(os.Stderr, "usage: benchdata big|small|huge|many DIR")
		os.Exit(2)
	}
}

// smallFiles writes n text files of 0.5-4 KiB spread over dirs directories.
func smallFiles(dir string, n, dirs int) {
	for i := range n {
		d := filepath.Join(dir, "pkg"+strconv.Itoa(i%dirs))
		must(os.MkdirAll(d, 0o755))
		r := rand.New(rand.NewPCG(uint64(i), 7))
		text(filepath.Join(d, "file"+strconv.Itoa(i)+".go"), 512+r.Int64N(3584), uint64(i))
	}
}

func random(path string, size int64, seed uint64) {
	f, err := os.Create(path)
	must(err)
	r := rand.NewChaCha8([32]byte{byte(seed), 1})
	buf := make([]byte, 1<<20)
	for size > 0 {
		n := min(size, int64(len(buf)))
		r.Read(buf[:n])
		_, err := f.Write(buf[:n])
		must(err)
		size -= n
	}
	must(f.Close())
}

// text writes log-like lines: compressible about 4-5x, like build output.
func text(path string, size int64, seed uint64) {
	f, err := os.Create(path)
	must(err)
	w := bufio.NewWriterSize(f, 1<<20)
	r := rand.New(rand.NewPCG(seed, 42))
	var n int64
	line := 0
	for n < size {
		s := fmt.Sprintf("%06d %s:", line, words[r.IntN(len(words))])
		for range 6 + r.IntN(8) {
			s += " " + words[r.IntN(len(words))]
		}
		s += " id=" + strconv.FormatUint(r.Uint64()%100000, 10) + "\n"
		if n+int64(len(s)) > size {
			s = s[:size-n]
		}
		w.WriteString(s)
		n += int64(len(s))
		line++
	}
	must(w.Flush())
	must(f.Close())
}

func must(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
