package transport

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash"
	"io"
	"os"
	"runtime"
	"sync"

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

type zstdCodec struct{}

var zstdEncoder = sync.OnceValue(func() *zstd.Encoder {
	e, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest),
		zstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0)), zstd.WithWindowSize(blockSize))
	if err != nil {
		panic(err)
	}
	return e
})

func (zstdCodec) mediaType() string { return MediaTypeTarZstd }
func (zstdCodec) compress(dst *bytes.Buffer, src []byte) error {
	out := zstdEncoder().EncodeAll(src, dst.AvailableBuffer())
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

// cpuSlots bounds the number of blocks being compressed at once across all
// layers of a push.
var cpuSlots = make(chan struct{}, runtime.GOMAXPROCS(0))

var blockPool = sync.Pool{New: func() any { b := make([]byte, 0, blockSize); return &b }}

type blockJob struct {
	src   *[]byte
	out   bytes.Buffer
	err   error
	ready chan struct{}
}

// blockWriter compresses what is written to it in blocks, in parallel, and
// writes the members to out in order.
type blockWriter struct {
	c       codec
	out     io.Writer
	cur     *[]byte
	queue   chan *blockJob
	done    chan error
	written bool
	closed  bool
}

func newBlockWriter(c codec, out io.Writer) *blockWriter {
	w := &blockWriter{c: c, out: out, queue: make(chan *blockJob, 2*cap(cpuSlots)+1), done: make(chan error, 1)}
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
			_, err = w.out.Write(j.out.Bytes())
		}
	}
	w.done <- err
}

func (w *blockWriter) submit() {
	j := &blockJob{src: w.cur, ready: make(chan struct{})}
	w.cur = nil
	w.written = true
	w.queue <- j
	go func() {
		cpuSlots <- struct{}{}
		j.out.Grow(len(*j.src) + len(*j.src)/64 + 64)
		j.err = compressAdaptive(w.c, &j.out, *j.src)
		<-cpuSlots
		*j.src = (*j.src)[:0]
		blockPool.Put(j.src)
		close(j.ready)
	}()
}

func (w *blockWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		if w.cur == nil {
			w.cur = blockPool.Get().(*[]byte)
		}
		k := min(blockSize-len(*w.cur), len(p))
		*w.cur = append(*w.cur, p[:k]...)
		p = p[k:]
		if len(*w.cur) == blockSize {
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
	if w.cur != nil && len(*w.cur) > 0 || !w.written {
		if w.cur == nil {
			w.cur = blockPool.Get().(*[]byte)
		}
		w.submit()
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
