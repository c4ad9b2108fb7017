package prune

import (
	"encoding/json"
	"reflect"
	"testing"
)

var decodeSamples = []string{
	`{}`, `[]`, `null`, `true`, `false`, `0`, `-0`, `1.5e3`, `-12.25E-2`, `1e400`, `01`, `1.`, `.5`, `+1`, `-`,
	`"a"`, `"a\nb\t\"\\\/\b\f\r"`, `"\u00e9\u2028\ud83d\ude00"`, `"\ud800"`, "\"\xff\xfe\"", `"é😀"`, "\"a\x01\"", `"\x"`,
	` {"a" : [1, 2 ,{"b":null}], "c":"d", "a":true} `, `{"a":1,}`, `[1,]`, `[1 2]`, `{"a" 1}`, `{"a":1} x`, `{"a":`,
	`{"metadata":{"name":"x","labels":{"k":"v"}},"spec":{"tasks":[{"name":"t","taskSpec":{"steps":[{"script":"echo \u003c$(workspaces.src.path)\u003e\n"}]}}]}}`,
	`nul`, `tru`, `[`, `]`, `{`, `"`, ``, ` `, `123456789012345678901234567890`, `-9007199254740993`,
}

func sameAsJSON(t *testing.T, data []byte) {
	t.Helper()
	var want any
	wantErr := json.Unmarshal(data, &want)
	got, err := Decode(data)
	if (err != nil) != (wantErr != nil) {
		t.Fatalf("%q: error %v, encoding/json's %v", data, err, wantErr)
	}
	if err != nil {
		if err.Error() != wantErr.Error() {
			t.Fatalf("%q: error %v, encoding/json's %v", data, err, wantErr)
		}
		return
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%q: %#v, encoding/json's %#v", data, got, want)
	}
	// what the fast path alone makes of it must be encoding/json's too
	p := parser{data: data}
	p.ws()
	if v, ok := p.value("", 0); ok {
		p.ws()
		if p.i == len(data) && !reflect.DeepEqual(v, want) {
			t.Fatalf("%q: fast path %#v, encoding/json's %#v", data, v, want)
		}
	}
}

// sameRestored fails unless decoding with restore is encoding/json's
// result after restoreProperties.
func sameRestored(t *testing.T, data []byte) {
	t.Helper()
	var want any
	if json.Unmarshal(data, &want) != nil {
		return
	}
	restoreProperties("", want)
	got, err := decode(data, true)
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("%q: restored %#v (%v), want %#v", data, got, err, want)
	}
}

func TestDecode(t *testing.T) {
	for _, s := range []string{
		`{"params":[{"name":"o","type":"object"},{"type":"object","properties":null},{"type":"string"},{}]}`,
		`{"spec":{"params":[{"type":"object","properties":{"k":{}}}],"x":{"params":{"type":"object"}}}}`,
		`{"params":{"type":"object","p":[{"params":[{"type":"object"}]}]}}`, `{"params":[{"type":"object","n":"\u00e9"}]}`,
	} {
		sameRestored(t, []byte(s))
	}
	for _, s := range decodeSamples {
		sameAsJSON(t, []byte(s))
	}
}

func FuzzDecode(f *testing.F) {
	for _, s := range decodeSamples {
		f.Add([]byte(s))
	}
	f.Add([]byte(`{"params":[{"name":"o","type":"object"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) { sameAsJSON(t, data); sameRestored(t, data) })
}
