// Package offline feeds transform from files instead of a cluster: it reads
// multi-document YAML, resolves a run's pipelineRef and taskRefs against the
// supplied objects, and writes the result back as clean YAML. The webhook's
// offline `convert` command and the golden tests use it.
package offline

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/tekton-oci-transport/tekton-oci-transport/transform/decode"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// Document is one decoded object and where it came from.
type Document struct {
	File   string // as given, "-" for stdin
	Index  int    // 0-based position in the file
	Object runtime.Object
	Digest string // sha256 of the document's bytes, recorded as its source digest
}

// Error locates a bad document: which file, which document, what is wrong.
type Error struct {
	File  string
	Index int
	Err   error
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s: document %d: %v", e.File, e.Index, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// LoadFile reads every document of a file ("-" reads stdin).
func LoadFile(path string, stdin io.Reader) ([]Document, error) {
	var r io.Reader
	if path == "-" {
		r = stdin
	} else {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	return Load(path, r)
}

// Load reads every non-empty document of a multi-document YAML (or JSON)
// stream. Documents are numbered from 0 in order, counting comment-only ones
// (the YAML reader itself drops a document with no line at all between two
// `---`), so an error's index points at the right document.
func Load(name string, r io.Reader) ([]Document, error) {
	reader := utilyaml.NewYAMLReader(bufio.NewReader(r))
	var docs []Document
	for i := 0; ; i++ {
		raw, err := reader.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, &Error{File: name, Index: i, Err: err}
		}
		if len(bytes.TrimSpace(StripComments(raw))) == 0 {
			continue
		}
		obj, err := decode.Object(raw)
		if err != nil {
			return nil, &Error{File: name, Index: i, Err: err}
		}
		sum := sha256.Sum256(raw)
		docs = append(docs, Document{File: name, Index: i, Object: obj, Digest: hex.EncodeToString(sum[:])})
	}
	return docs, nil
}

// StripComments drops whole-line YAML comments, so a document that is only
// comments counts as empty.
func StripComments(doc []byte) []byte {
	var out []byte
	for _, line := range bytes.Split(doc, []byte("\n")) {
		if t := bytes.TrimSpace(line); len(t) > 0 && t[0] == '#' {
			continue
		}
		out = append(append(out, line...), '\n')
	}
	return out
}
