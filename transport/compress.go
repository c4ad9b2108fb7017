package transport

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// Compression names accepted by --compression.
const (
	CompressionGzip = "gzip"
	CompressionZstd = "zstd"
	CompressionNone = "none"
)

// blockSize is the unit of parallel compression: each block becomes an
// independent gzip member or zstd frame, so a single large file is
// compressed on every core and the result is still one valid stream.
const blockSize = 1 << 20

type codec interface {
	mediaType() string
	// compress appends a complete, independently decodable member to dst.
	compress(dst *bytes.Buffer, src []byte) error
	// store appends a member that holds src uncompressed (for data that
	// does not compress: random bytes, already-compressed files).
	store(dst *bytes.Buffer, src []byte) error
	// newReader decodes a whole stream (all members).
	newReader(r io.Reader) (io.ReadCloser, error)
}

func codecFor(name string) (codec, error) {
	switch name {
	case CompressionGzip:
		return gzipCodec{}, nil
	case CompressionZstd:
		return zstdCodec{}, nil
	case CompressionNone:
		return noneCodec{}, nil
	}
	return nil, usagef("unknown compression %q (gzip, zstd, none)", name)
}

func codecForMediaType(mt string) (codec, bool) {
	switch mt {
	case MediaTypeTarGzip:
		return gzipCodec{}, true
	case MediaTypeTarZstd:
		return zstdCodec{}, true
	case MediaTypeTar:
		return noneCodec{}, true
	}
	return nil, false
}

type gzipCodec struct{}

var gzipWriters = sync.Pool{New: func() any {
	w, _ := gzip.NewWriterLevel(io.Discard, gzip.BestSpeed)
	return w
}}

func (gzipCodec) mediaType() string { return MediaTypeTarGzip }
func (gzipCodec) compress(dst *bytes.Buffer, src []byte) error {
	w := gzipWriters.Get().(*gzip.Writer)
	defer gzipWriters.Put(w)
	w.Reset(dst)
	if _, err := w.Write(src); err != nil {
		return err
	}
	return w.Close()
}

var gzipStorers = sync.Pool{New: func() any {
	w, _ := gzip.NewWriterLevel(io.Discard, gzip.NoCompression)
	return w
}}

func (gzipCodec) store(dst *bytes.Buffer, src []byte) error {
	w := gzipStorers.Get().(*gzip.Writer)
	defer gzipStorers.Put(w)
	w.Reset(dst)
	if _, err := w.Write(src); err != nil {
		return err
	}
	return w.Close()
}

func (gzipCodec) newReader(r io.Reader) (io.ReadCloser, error) {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return nil, err
	}
	zr.Multistream(true)
	return zr, nil
}

// zstdCodec compresses with enc (nil: a shared encoder for every core).
type zstdCodec struct{ enc *zstd.Encoder }

// newZstdEncoder makes the encoder of the zstd codec for n blocks compressed
// at once. Each of its n workers keeps a 1 MiB window: about 1.7 MiB with
// WithLowerEncoderMem (a 1.1 MiB history), 2.5 MiB without (a 2 MiB one),
// for the same output; a smaller window saved another MiB per worker but
// cost 3 % of the ratio on Go source (README, "Memory").
func newZstdEncoder(n int) *zstd.Encoder {
	e, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest),
		zstd.WithEncoderConcurrency(max(n, 1)), zstd.WithWindowSize(blockSize), zstd.WithLowerEncoderMem(true))
	if err != nil {
		panic(err)
	}
	return e
}

var zstdEncoder = sync.OnceValue(func() *zstd.Encoder { return newZstdEncoder(runtime.GOMAXPROCS(0)) })

func (zstdCodec) mediaType() string { return MediaTypeTarZstd }
func (z zstdCodec) compress(dst *bytes.Buffer, src []byte) error {
	e := z.enc
	if e == nil {
		e = zstdEncoder()
	}
	out := e.EncodeAll(src, dst.AvailableBuffer())
	dst.Write(out)
	return nil
}

// store writes a zstd frame of raw blocks (RFC 8878 3.1.1): no encoder
// work at all for incompressible data.
func (zstdCodec) store(dst *bytes.Buffer, src []byte) error {
	var hdr [13]byte
	binary.LittleEndian.PutUint32(hdr[0:], 0xFD2FB528)
	hdr[4] = 3<<6 | 1<<5 // 8-byte frame content size, single segment
	binary.LittleEndian.PutUint64(hdr[5:], uint64(len(src)))
	dst.Write(hdr[:])
	const maxBlock = 128 << 10
	for {
		n := min(len(src), maxBlock)
		last := uint32(0)
		if n == len(src) {
			last = 1
		}
		h := last | uint32(n)<<3 // block type 0: raw
		dst.Write([]byte{byte(h), byte(h >> 8), byte(h >> 16)})
		dst.Write(src[:n])
		src = src[n:]
		if last == 1 {
			return nil
		}
	}
}

type zstdReadCloser struct{ *zstd.Decoder }

func (z zstdReadCloser) Close() error { z.Decoder.Close(); return nil }

func (zstdCodec) newReader(r io.Reader) (io.ReadCloser, error) {
	d, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(2), zstd.WithDecoderMaxWindow(64<<20),
		zstd.WithDecoderMaxMemory(1<<30))
	if err != nil {
		return nil, err
	}
	return zstdReadCloser{d}, nil
}

type noneCodec struct{}

func (noneCodec) mediaType() string { return MediaTypeTar }
func (noneCodec) compress(dst *bytes.Buffer, src []byte) error {
	dst.Write(src)
	return nil
}
func (noneCodec) store(dst *bytes.Buffer, src []byte) error {
	dst.Write(src)
	return nil
}
func (noneCodec) newReader(r io.Reader) (io.ReadCloser, error) { return io.NopCloser(r), nil }

// sampleSize is how much of a block is test-compressed to decide whether
// compressing the whole block is worth it.
const sampleSize = 32 << 10

var sampleBufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// compressAdaptive stores blocks that do not compress (a sample saves less
// than 10%) and compresses the others.
func compressAdaptive(c codec, dst *bytes.Buffer, src []byte) error {
	if _, none := c.(noneCodec); !none && len(src) >= 4*sampleSize {
		b := sampleBufs.Get().(*bytes.Buffer)
		b.Reset()
		err := c.compress(b, src[:sampleSize])
		n := b.Len()
		sampleBufs.Put(b)
		if err == nil && n > sampleSize*9/10 {
			return c.store(dst, src)
		}
	}
	return c.compress(dst, src)
}

// blockArena bounds the memory and the CPU of the compression of a push:
// at most cap(free) blocks (1 MiB of input and its compressed member) exist,
// shared by all the layers being written, and at most cap(cpu) of them are
// compressed at once. A block goes back to the arena once its member has
// been written out, so the arena's size is the whole of the compression
// buffers, whatever the number of layers in flight.
type blockArena struct {
	cpu  chan struct{}
	free chan *block
	mu   sync.Mutex
	made int
}

type block struct {
	src []byte
	out bytes.Buffer
}

// blockBytes is what one block of an arena holds at most: 1 MiB of input
// and its member (stored blocks grow by their frame headers).
const blockBytes = 2*blockSize + blockSize/64 + 64

// newBlockArena makes an arena of blocks buffers for workers blocks
// compressed at once.
func newBlockArena(workers, blocks int) *blockArena {
	workers = max(workers, 1)
	return &blockArena{cpu: make(chan struct{}, workers), free: make(chan *block, max(blocks, workers+1))}
}

// get returns a free block, waiting for one when all are in use.
func (a *blockArena) get() *block {
	select {
	case b := <-a.free:
		return b
	default:
	}
	a.mu.Lock()
	if a.made < cap(a.free) {
		a.made++
		a.mu.Unlock()
		b := &block{src: make([]byte, 0, blockSize)}
		b.out.Grow(blockBytes - blockSize)
		return b
	}
	a.mu.Unlock()
	return <-a.free
}

func (a *blockArena) put(b *block) {
	b.src = b.src[:0]
	b.out.Reset()
	a.free <- b
}

// defaultArena serves the writers made without one (tests).
var defaultArena = sync.OnceValue(func() *blockArena {
	n := runtime.GOMAXPROCS(0)
	return newBlockArena(n, 2*n+1)
})

type blockJob struct {
	b     *block
	err   error
	ready chan struct{}
}

// blockWriter compresses what is written to it in blocks, in parallel, and
// writes the members to out in order.
type blockWriter struct {
	c       codec
	out     io.Writer
	arena   *blockArena
	cur     *block
	queue   chan *blockJob
	done    chan error
	failed  atomic.Bool // out failed: stop reading and compressing
	written bool
	closed  bool
}

func newBlockWriter(c codec, out io.Writer) *blockWriter {
	return newArenaWriter(defaultArena(), c, out)
}

// newArenaWriter makes a block writer that takes its blocks from a.
func newArenaWriter(a *blockArena, c codec, out io.Writer) *blockWriter {
	w := &blockWriter{c: c, out: out, arena: a, queue: make(chan *blockJob, cap(a.free)), done: make(chan error, 1)}
	go w.drain()
	return w
}

func (w *blockWriter) drain() {
	var err error
	for j := range w.queue {
		<-j.ready
		if err == nil {
			err = j.err
		}
		if err == nil {
			_, err = w.out.Write(j.b.out.Bytes())
			if err != nil {
				w.failed.Store(true)
			}
		}
		w.arena.put(j.b)
	}
	w.done <- err
}

func (w *blockWriter) submit() {
	j := &blockJob{b: w.cur, ready: make(chan struct{})}
	w.cur = nil
	w.written = true
	w.queue <- j
	go func() {
		w.arena.cpu <- struct{}{}
		j.err = compressAdaptive(w.c, &j.b.out, j.b.src)
		<-w.arena.cpu
		close(j.ready)
	}()
}

// errOutputFailed is returned by Write once the output has failed; Close
// returns the output's error.
var errOutputFailed = errors.New("compressed output failed")

func (w *blockWriter) Write(p []byte) (int, error) {
	if w.failed.Load() {
		return 0, errOutputFailed
	}
	n := len(p)
	for len(p) > 0 {
		if w.cur == nil {
			w.cur = w.arena.get()
		}
		k := min(blockSize-len(w.cur.src), len(p))
		w.cur.src = append(w.cur.src, p[:k]...)
		p = p[k:]
		if len(w.cur.src) == blockSize {
			w.submit()
		}
	}
	return n, nil
}

// Close flushes the last block and waits for every member to be written.
func (w *blockWriter) Close() error {
	if w.closed {
		return nil
	}
	w.closed = true
	if w.cur != nil && len(w.cur.src) > 0 || !w.written {
		if w.cur == nil {
			w.cur = w.arena.get()
		}
		w.submit()
	} else if w.cur != nil {
		w.arena.put(w.cur)
		w.cur = nil
	}
	close(w.queue)
	return <-w.done
}

// spool holds a compressed layer: in memory up to memLimit, then in an
// unlinked temporary file in dir ("" = the system's). It hashes what is
// written.
type spool struct {
	memLimit int
	dir      string
	mem      bytes.Buffer
	f        *os.File
	n        int64
	h        hash.Hash
}

func newSpool(memLimit int, dir string) *spool {
	return &spool{memLimit: memLimit, dir: dir, h: sha256.New()}
}

func (s *spool) Write(p []byte) (int, error) {
	s.h.Write(p)
	s.n += int64(len(p))
	if s.f == nil && s.mem.Len()+len(p) <= s.memLimit {
		return s.mem.Write(p)
	}
	if s.f == nil {
		f, err := os.CreateTemp(s.dir, ".oci-transport-spool-*")
		if err != nil {
			return 0, fmt.Errorf("spool: %w", err)
		}
		os.Remove(f.Name())
		s.f = f
		if _, err := f.Write(s.mem.Bytes()); err != nil {
			return 0, err
		}
		s.mem = bytes.Buffer{}
	}
	return s.f.Write(p)
}

// reader returns a fresh reader over the whole content (for each attempt).
func (s *spool) reader() io.Reader {
	if s.f != nil {
		return io.NewSectionReader(s.f, 0, s.n)
	}
	return bytes.NewReader(s.mem.Bytes())
}

func (s *spool) Close() {
	if s.f != nil {
		s.f.Close()
	}
}
