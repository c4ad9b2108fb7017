package transport

import (
	"bytes"
	"io"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestCodecsRoundTrip(t *testing.T) {
	random := make([]byte, 3*blockSize+12345)
	rand.NewChaCha8([32]byte{1}).Read(random)
	text := []byte(strings.Repeat("a fairly compressible line of build output 12345\n", 100000))
	mixed := append(append([]byte{}, text[:2*blockSize]...), random...)
	for _, name := range []string{CompressionZstd, CompressionGzip, CompressionNone} {
		c, err := codecFor(name)
		require.NoError(t, err)
		for _, in := range [][]byte{nil, []byte("x"), random, text, mixed} {
			var out bytes.Buffer
			w := newBlockWriter(c, &out)
			// odd write sizes cross block boundaries
			for p := in; len(p) > 0; {
				n := min(len(p), 77777)
				_, err := w.Write(p[:n])
				require.NoError(t, err)
				p = p[n:]
			}
			require.NoError(t, w.Close())
			r, err := c.newReader(bytes.NewReader(out.Bytes()))
			require.NoError(t, err)
			got, err := io.ReadAll(r)
			require.NoError(t, err)
			require.Equal(t, len(in), len(got), name)
			require.True(t, bytes.Equal(in, got), name)
			if name != CompressionNone && len(in) == len(random) {
				require.Less(t, out.Len(), len(in)+len(in)/100, "%s: incompressible data is stored, not inflated", name)
			}
			if name != CompressionNone && len(in) == len(text) {
				require.Less(t, out.Len(), len(in)/5, "%s: text is compressed", name)
			}
		}
	}
}

func TestZstdStoredFrame(t *testing.T) {
	for _, n := range []int{0, 1, 128 << 10, 128<<10 + 1, 1 << 20} {
		src := make([]byte, n)
		rand.NewChaCha8([32]byte{2}).Read(src)
		var b bytes.Buffer
		require.NoError(t, zstdCodec{}.store(&b, src))
		require.NoError(t, zstdCodec{}.store(&b, src)) // two frames in a row
		r, err := zstdCodec{}.newReader(&b)
		require.NoError(t, err)
		got, err := io.ReadAll(r)
		require.NoError(t, err)
		require.Equal(t, append(append([]byte{}, src...), src...), got)
	}
}
