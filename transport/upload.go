package transport

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/errcode"
)

// A layer is uploaded while it is compressed, so that no layer is held in
// memory or spooled on disk before its upload. A layer whose compressed
// bytes fit in the sink's buffer (the budget's chunk) is uploaded whole
// after a HEAD, as before. A bigger one opens an upload session (POST) and
// is sent, in the first mode the registry takes:
//
//   - stream: one PATCH whose body is the compressed layer as it is
//     written (chunked transfer encoding, no Content-Length), as `docker
//     push` sends blobs; one request per layer;
//   - chunks: a PATCH per chunk with Content-Range and Content-Length (OCI
//     distribution spec, "Pushing a blob in chunks"); a request, and a
//     registry-side resume, per chunk: with 2 MiB chunks CNCF Distribution
//     spent about 50 % more CPU on a 1 GiB push than for whole uploads or
//     streams (1.7 s against 1.1-1.3 s);
//   - whole: spooled into an unlinked file in the state directory, then
//     POST+PUT, as before.
//
// then completed with PUT ?digest= once the digest is known. A registry that
// refuses a stream (with 400, 405, 411, 413, 415, 416 or 501) or a first
// chunk lowers the mode for the rest of the push; the refused layer is written
// again (a stream) or spooled from its first chunk on (chunks).

// Upload modes, in the order they are tried; a push only goes down.
const (
	uploadStream int32 = iota
	uploadChunks
	uploadWhole
)

var uploadModeNames = [...]string{"stream", "chunks", "whole"}

// uploader uploads the layers of one push.
type uploader struct {
	c        *client
	stateDir string
	// chunk is the size of the buffer each layer in flight holds: below it
	// a layer is uploaded whole, in chunks mode it is the chunk.
	chunk int
	bufs  chan []byte
	mode  atomic.Int32
	// sent counts the bytes sent, failed attempts of streams and chunks
	// included.
	sent atomic.Int64
}

func newUploader(c *client, stateDir string, chunk, inFlight int) *uploader {
	return &uploader{c: c, stateDir: stateDir, chunk: chunk, bufs: make(chan []byte, inFlight)}
}

// lower sets the upload mode to at most m, and says so once per mode.
func (u *uploader) lower(m int32, why string) {
	for {
		cur := u.mode.Load()
		if cur >= m {
			return
		}
		if u.mode.CompareAndSwap(cur, m) {
			u.c.opts.Log.Warn("push: the registry refuses this way of uploading; the next is used for the rest of the push",
				"refused", uploadModeNames[cur], "next", uploadModeNames[m], "reason", why)
			return
		}
	}
}

func (u *uploader) getBuf() []byte {
	select {
	case b := <-u.bufs:
		return b[:0]
	default:
		return make([]byte, 0, u.chunk)
	}
}

func (u *uploader) putBuf(b []byte) {
	select {
	case u.bufs <- b:
	default:
	}
}

// layerUpload is what pushLayer did.
type layerUpload struct {
	desc     ocispec.Descriptor
	uploaded bool // the registry did not have the blob
	streamed bool // sent while compressed (stream or chunks)
}

// streamRefusedError is a registry's answer to a streamed PATCH that means
// "not this way": the layer is written again in chunks.
type streamRefusedError struct{ err error }

func (e *streamRefusedError) Error() string { return "streamed upload refused: " + e.err.Error() }
func (e *streamRefusedError) Unwrap() error { return e.err }

// pushLayer writes, compresses and uploads one layer. A layer whose session
// fails (a connection lost in a stream, the registry restarted and forgot
// the session) is written again from the files; one that was buffered or
// spooled is re-sent from there.
func (u *uploader) pushLayer(ctx context.Context, desc ocispec.Descriptor, write func(io.Writer) error) (layerUpload, error) {
	var res layerUpload
	var pending *layerSink
	once := func() error {
		s := &layerSink{u: u, ctx: ctx, buf: u.getBuf(), h: sha256.New()}
		if err := write(s); err != nil {
			s.close()
			return err
		}
		desc.Digest, desc.Size = digest.NewDigest(digest.SHA256, s.h), s.n
		if s.sess == nil { // whole: uploaded below, with retries of its own
			pending = s
			return nil
		}
		defer s.close()
		up, err := s.finish(desc)
		if err != nil {
			return err
		}
		res = layerUpload{desc: desc, uploaded: up, streamed: true}
		return nil
	}
	err := u.c.withRetry(ctx, "push layer "+desc.Annotations[AnnotationTitle], func() error {
		for {
			err := once()
			var sr *streamRefusedError
			if !errors.As(err, &sr) {
				return err
			}
			// streams are off now: write the layer again at once
			u.lower(uploadChunks, sr.err.Error())
		}
	})
	if err != nil || pending == nil {
		return res, err
	}
	defer pending.close()
	up, err := u.c.pushBlob(ctx, desc, pending.reader)
	if up {
		u.sent.Add(desc.Size)
	}
	return layerUpload{desc: desc, uploaded: up}, err
}

// layerSink receives a compressed layer: it hashes it and keeps it in
// memory up to its buffer; past that it opens an upload session and sends
// it in the uploader's mode, or spools it.
type layerSink struct {
	u     *uploader
	ctx   context.Context
	buf   []byte
	h     hash.Hash
	n     int64
	sess  *uploadSession
	spill *os.File
	// stream mode: the writer of the PATCH's body, and its result
	stream *io.PipeWriter
	done   chan error
}

func (s *layerSink) Write(p []byte) (int, error) {
	n := len(p)
	s.h.Write(p)
	s.n += int64(n)
	for len(p) > 0 {
		switch {
		case s.stream != nil:
			if _, err := s.stream.Write(p); err != nil {
				return 0, err
			}
			return n, nil
		case s.spill != nil:
			if _, err := s.spill.Write(p); err != nil {
				return 0, fmt.Errorf("spool: %w", err)
			}
			return n, nil
		case len(s.buf) == cap(s.buf):
			if err := s.flush(); err != nil {
				return 0, err
			}
			continue
		}
		k := copy(s.buf[len(s.buf):cap(s.buf)], p)
		s.buf = s.buf[:len(s.buf)+k]
		p = p[k:]
	}
	return n, nil
}

// flush is called when the buffer is full and more is coming: the layer is
// not uploaded whole from memory.
func (s *layerSink) flush() error {
	if s.sess != nil { // chunks mode
		if err := s.sess.patch(s.buf, false); err != nil {
			return err
		}
		s.u.sent.Add(int64(len(s.buf)))
		s.buf = s.buf[:0]
		return nil
	}
	mode := s.u.mode.Load()
	if mode == uploadWhole {
		return s.spillBuf()
	}
	sess, err := s.u.c.startUpload(s.ctx)
	if err != nil {
		return err
	}
	if mode == uploadStream {
		s.sess = sess
		s.startStream()
		return nil
	}
	if sess.minChunk > int64(len(s.buf)) {
		sess.cancel()
		s.u.lower(uploadWhole, fmt.Sprintf("chunks of at least %d bytes (OCI-Chunk-Min-Length) asked, the memory budget gives %d", sess.minChunk, len(s.buf)))
		return s.spillBuf()
	}
	if err := sess.patch(s.buf, true); err != nil {
		sess.cancel()
		var rc *chunkRefusedError
		if errors.As(err, &rc) {
			s.u.lower(uploadWhole, rc.err.Error())
			return s.spillBuf()
		}
		return err
	}
	s.sess = sess
	s.u.sent.Add(int64(len(s.buf)))
	s.buf = s.buf[:0]
	return nil
}

// startStream sends the layer as the body of one PATCH: the buffer, then
// whatever is written next, through a pipe. The request's end closes the
// pipe, so a writer never waits on a request that is over.
func (s *layerSink) startStream() {
	pr, pw := io.Pipe()
	s.stream, s.done = pw, make(chan error, 1)
	body := io.MultiReader(bytes.NewReader(s.buf), pr)
	go func() {
		err := s.sess.patchStream(body)
		if err != nil {
			pr.CloseWithError(err)
		} else {
			pr.CloseWithError(errors.New("the registry answered before the end of the stream"))
		}
		s.done <- err
	}()
}

// endStream closes the stream's body and waits for the registry's answer.
func (s *layerSink) endStream() error {
	s.stream.Close()
	err := <-s.done
	s.stream = nil
	if err != nil {
		return err
	}
	s.u.sent.Add(s.n)
	return s.sess.checkRange(s.n)
}

// spillBuf moves the buffer into a spool file, where the rest of the layer
// goes too.
func (s *layerSink) spillBuf() error {
	f, err := os.CreateTemp(s.u.stateDir, ".oci-transport-spool-*")
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	os.Remove(f.Name())
	s.spill = f
	if _, err := f.Write(s.buf); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	s.buf = s.buf[:0]
	return nil
}

// reader returns a fresh reader over a buffered or spooled layer.
func (s *layerSink) reader() io.Reader {
	if s.spill != nil {
		return io.NewSectionReader(s.spill, 0, s.n)
	}
	return bytes.NewReader(s.buf)
}

// finish ends the stream or sends the last chunk, and completes the upload
// unless the registry has the blob already (an unchanged layer pushed
// again): then the session is dropped and uploaded is false.
func (s *layerSink) finish(desc ocispec.Descriptor) (uploaded bool, err error) {
	if s.stream != nil {
		if err := s.endStream(); err != nil {
			return false, err
		}
	} else if len(s.buf) > 0 {
		if err := s.sess.patch(s.buf, false); err != nil {
			return false, err
		}
		s.u.sent.Add(int64(len(s.buf)))
		s.buf = s.buf[:0]
	}
	if ok, err := s.u.c.repo.Blobs().Exists(s.ctx, desc); err == nil && ok {
		return false, nil
	}
	if err := s.sess.commit(desc.Digest); err != nil {
		return false, err
	}
	s.sess = nil
	if testHookBlobPushed != nil {
		testHookBlobPushed()
	}
	return true, nil
}

func (s *layerSink) close() {
	if s.stream != nil {
		s.stream.CloseWithError(errors.New("layer abandoned"))
		<-s.done
		s.stream = nil
	}
	if s.sess != nil {
		s.sess.cancel()
		s.sess = nil
	}
	if s.spill != nil {
		s.spill.Close()
		s.spill = nil
	}
	if s.buf != nil {
		s.u.putBuf(s.buf)
		s.buf = nil
	}
}

// uploadSession is one blob upload session of the registry.
type uploadSession struct {
	c        *client
	ctx      context.Context // carries the repository's pull,push scope
	base     *url.URL        // the POST's URL: Locations must stay on its host
	location *url.URL
	offset   int64 // bytes sent in chunks
	minChunk int64
	// lastRange is the Range header of the last PATCH's answer
	lastRange string
}

// startUpload opens an upload session (POST /v2/<name>/blobs/uploads/).
// The requests go through the repository's auth.Client with the scope a
// push needs in their context, so a token registry's challenge is answered
// once and the cached token is reused for every chunk.
func (c *client) startUpload(ctx context.Context) (*uploadSession, error) {
	ctx = auth.AppendRepositoryScope(ctx, c.repo.Reference, auth.ActionPull, auth.ActionPush)
	scheme := "https"
	if c.repo.PlainHTTP {
		scheme = "http"
	}
	u := &url.URL{Scheme: scheme, Host: c.repo.Reference.Host(), Path: "/v2/" + c.repo.Reference.Repository + "/blobs/uploads/"}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.repo.Client.Do(req)
	if err != nil {
		return nil, err
	}
	defer drainClose(resp)
	if resp.StatusCode != http.StatusAccepted {
		return nil, responseError(resp)
	}
	s := &uploadSession{c: c, ctx: ctx, base: req.URL}
	if err := s.setLocation(resp); err != nil {
		return nil, err
	}
	if v := resp.Header.Get("OCI-Chunk-Min-Length"); v != "" {
		s.minChunk, _ = strconv.ParseInt(v, 10, 64)
	}
	return s, nil
}

// setLocation takes the session's next URL from a response: relative ones
// are resolved against the request, and one on another host or downgrading
// to http is refused (no credentials are sent elsewhere).
func (s *uploadSession) setLocation(resp *http.Response) error {
	loc, err := resp.Location()
	if err != nil {
		return fmt.Errorf("blob upload: %s %s answered without a Location: %w", resp.Request.Method, resp.Request.URL, err)
	}
	port := func(u *url.URL) string {
		if p := u.Port(); p != "" {
			return p
		}
		if u.Scheme == "https" {
			return "443"
		}
		return "80"
	}
	if loc.Hostname() != s.base.Hostname() || port(loc) != port(s.base) {
		return fmt.Errorf("blob upload Location %q is on a different host than the registry %q", loc.Host, s.base.Host)
	}
	if s.base.Scheme == "https" && loc.Scheme != "https" {
		return fmt.Errorf("blob upload Location %q downgrades scheme from https", loc.Host)
	}
	s.location = loc
	return nil
}

// chunkRefusedError is the registry's answer to a first chunk it does not
// take: it does not do chunked uploads (or not with these chunks).
type chunkRefusedError struct{ err error }

func (e *chunkRefusedError) Error() string { return "first chunk refused: " + e.err.Error() }
func (e *chunkRefusedError) Unwrap() error { return e.err }

// sessionLostError is a later request of a session the registry no longer
// knows (it restarted, or its upload state expired): the layer is uploaded
// again from the start. retryable knows it, so the retry loop tries
// again, and it keeps the registry's answer out of the error chain, whose
// 4xx status would stop it.
type sessionLostError struct{ msg string }

func (e *sessionLostError) Error() string { return "blob upload session lost: " + e.msg }

// do sends a request of the session with an octet-stream body and the
// headers given as name, value pairs; the caller drains and closes the
// response (drainClose).
func (s *uploadSession) do(method, u string, body io.Reader, header ...string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(s.ctx, method, u, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return s.c.repo.Client.Do(req)
}

// patch sends one chunk (PATCH with Content-Range and Content-Length).
func (s *uploadSession) patch(chunk []byte, first bool) error {
	resp, err := s.do(http.MethodPatch, s.location.String(), bytes.NewReader(chunk),
		"Content-Range", fmt.Sprintf("%d-%d", s.offset, s.offset+int64(len(chunk))-1))
	if err != nil {
		return err
	}
	defer drainClose(resp)
	if resp.StatusCode != http.StatusAccepted {
		rerr := responseError(resp)
		switch {
		case first && refusesChunks(resp.StatusCode):
			return &chunkRefusedError{err: rerr}
		case !first && (resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusBadRequest ||
			resp.StatusCode == http.StatusRequestedRangeNotSatisfiable):
			return &sessionLostError{msg: rerr.Error()}
		}
		return rerr
	}
	if err := s.setLocation(resp); err != nil {
		return err
	}
	s.lastRange = resp.Header.Get("Range")
	if err := s.checkRange(s.offset + int64(len(chunk))); err != nil {
		return err
	}
	s.offset += int64(len(chunk))
	return nil
}

// patchStream sends body as one PATCH of unknown length.
func (s *uploadSession) patchStream(body io.Reader) error {
	resp, err := s.do(http.MethodPatch, s.location.String(), io.NopCloser(body)) // length unknown
	if err != nil {
		return err
	}
	defer drainClose(resp)
	if resp.StatusCode != http.StatusAccepted {
		rerr := responseError(resp)
		switch {
		case refusesStream(resp.StatusCode):
			return &streamRefusedError{err: rerr}
		case resp.StatusCode == http.StatusNotFound:
			return &sessionLostError{msg: rerr.Error()}
		}
		return rerr
	}
	s.lastRange = resp.Header.Get("Range")
	return s.setLocation(resp)
}

// checkRange compares the registry's Range answer ("0-<last byte>"; some
// send "bytes=0-<last>"; none is fine) with the n bytes sent.
func (s *uploadSession) checkRange(n int64) error {
	if s.lastRange == "" {
		return nil
	}
	_, last, _ := strings.Cut(strings.TrimPrefix(s.lastRange, "bytes="), "-")
	if v, err := strconv.ParseInt(last, 10, 64); err == nil && v != n-1 {
		return &sessionLostError{msg: fmt.Sprintf("the registry holds bytes %s of the upload, %d were sent", s.lastRange, n)}
	}
	return nil
}

// refusesStream reports the answers to a streamed PATCH that mean "not
// this way": no Content-Length or Content-Range (400 SIZE_INVALID, 411,
// 416), no PATCH (405, 501), a body limit of a proxy in front (413).
func refusesStream(status int) bool {
	switch status {
	case http.StatusBadRequest, http.StatusMethodNotAllowed, http.StatusLengthRequired, http.StatusRequestEntityTooLarge,
		http.StatusUnsupportedMediaType, http.StatusRequestedRangeNotSatisfiable, http.StatusNotImplemented:
		return true
	}
	return false
}

// refusesChunks reports the answers to a first chunk that mean "not this
// way" rather than a failure: the layer is then uploaded whole.
func refusesChunks(status int) bool {
	switch status {
	case http.StatusBadRequest, http.StatusNotFound, http.StatusMethodNotAllowed, http.StatusLengthRequired,
		http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType, http.StatusRequestedRangeNotSatisfiable,
		http.StatusNotImplemented:
		return true
	}
	return false
}

// commit completes the upload (PUT ?digest=, no body).
func (s *uploadSession) commit(d digest.Digest) error {
	u := *s.location
	q := u.Query()
	q.Set("digest", d.String())
	u.RawQuery = q.Encode()
	resp, err := s.do(http.MethodPut, u.String(), http.NoBody) // Content-Length: 0
	if err != nil {
		return err
	}
	defer drainClose(resp)
	switch resp.StatusCode {
	case http.StatusCreated:
		return nil
	case http.StatusNotFound:
		return &sessionLostError{msg: responseError(resp).Error()}
	}
	return responseError(resp)
}

// cancel drops the session (best effort: registries expire forgotten ones).
func (s *uploadSession) cancel() {
	ctx, done := context.WithTimeout(context.WithoutCancel(s.ctx), 5*time.Second)
	defer done()
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, s.location.String(), nil)
	if err != nil {
		return
	}
	if resp, err := s.c.repo.Client.Do(req); err == nil {
		drainClose(resp)
	}
}

// responseError is the registry's error answer, as oras-go reports it.
func responseError(resp *http.Response) *errcode.ErrorResponse {
	e := &errcode.ErrorResponse{Method: resp.Request.Method, URL: resp.Request.URL, StatusCode: resp.StatusCode}
	var body struct{ Errors errcode.Errors }
	if data, err := io.ReadAll(io.LimitReader(resp.Body, 8<<10)); err == nil && json.Unmarshal(data, &body) == nil {
		e.Errors = body.Errors
	}
	return e
}

func drainClose(resp *http.Response) {
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
}
