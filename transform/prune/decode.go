package prune

import (
	"encoding/json"
	"strconv"
	"unicode/utf8"
)

// Decode is json.Unmarshal into an any (maps, lists, float64, strings,
// bools, nil), several times faster: encoding/json scans its input twice
// (checkValid, then the decoder's state machine byte by byte) and allocates
// per token. What this parser does not read itself (a string with a \u
// escape or bytes that are not UTF-8, anything invalid or out of range, a
// nesting deeper than encoding/json's limit) is left to encoding/json, for
// that string or for the whole input, so the result and the error are
// always encoding/json's. FuzzDecode compares both.
func Decode(data []byte) (any, error) {
	return decode(data, false)
}

// decode is Decode, and with restore what restoreProperties does to its
// result, done while decoding.
func decode(data []byte, restore bool) (any, error) {
	p := parser{data: data, restore: restore}
	p.ws()
	v, ok := p.value("", 0)
	if ok {
		p.ws()
		if p.i == len(p.data) {
			return v, nil
		}
	}
	var out any
	if err := json.Unmarshal(data, &out); err != nil {
		return nil, err
	}
	if restore {
		restoreProperties("", out)
	}
	return out, nil
}

// maxDepth is encoding/json's nesting limit.
const maxDepth = 10000

type parser struct {
	data    []byte
	i       int
	restore bool
}

func (p *parser) ws() {
	for p.i < len(p.data) {
		switch p.data[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// value reads one value at p.i (no leading whitespace), found under key
// (the list's key for an element); ok false means "let encoding/json
// decide".
func (p *parser) value(key string, depth int) (any, bool) {
	if p.i >= len(p.data) {
		return nil, false
	}
	switch c := p.data[p.i]; c {
	case '{':
		if depth >= maxDepth {
			return nil, false
		}
		p.i++
		m := map[string]any{}
		p.ws()
		if p.i < len(p.data) && p.data[p.i] == '}' {
			p.i++
			return m, true // an empty object is no object param

		}
		for {
			if p.i >= len(p.data) || p.data[p.i] != '"' {
				return nil, false
			}
			k, ok := p.string()
			if !ok {
				return nil, false
			}
			p.ws()
			if p.i >= len(p.data) || p.data[p.i] != ':' {
				return nil, false
			}
			p.i++
			p.ws()
			v, ok := p.value(k, depth+1)
			if !ok {
				return nil, false
			}
			m[k] = v
			p.ws()
			if p.i >= len(p.data) {
				return nil, false
			}
			switch p.data[p.i] {
			case ',':
				p.i++
				p.ws()
			case '}':
				p.i++
				if p.restore && key == "params" && m["type"] == "object" && m["properties"] == nil {
					m["properties"] = map[string]any{}
				}
				return m, true
			default:
				return nil, false
			}
		}
	case '[':
		if depth >= maxDepth {
			return nil, false
		}
		p.i++
		l := make([]any, 0)
		p.ws()
		if p.i < len(p.data) && p.data[p.i] == ']' {
			p.i++
			return l, true
		}
		for {
			v, ok := p.value(key, depth+1)
			if !ok {
				return nil, false
			}
			l = append(l, v)
			p.ws()
			if p.i >= len(p.data) {
				return nil, false
			}
			switch p.data[p.i] {
			case ',':
				p.i++
				p.ws()
			case ']':
				p.i++
				return l, true
			default:
				return nil, false
			}
		}
	case '"':
		return p.string()
	case 't':
		return true, p.literal("true")
	case 'f':
		return false, p.literal("false")
	case 'n':
		return nil, p.literal("null")
	default:
		if c == '-' || (c >= '0' && c <= '9') {
			return p.number()
		}
		return nil, false
	}
}

func (p *parser) literal(word string) bool {
	if len(p.data)-p.i < len(word) || string(p.data[p.i:p.i+len(word)]) != word {
		return false
	}
	p.i += len(word)
	return true
}

// number reads a number of JSON's grammar, as float64 like encoding/json.
func (p *parser) number() (any, bool) {
	d, start := p.data, p.i
	i := p.i
	if d[i] == '-' {
		i++
	}
	switch {
	case i < len(d) && d[i] == '0':
		i++
	case i < len(d) && d[i] >= '1' && d[i] <= '9':
		for i < len(d) && d[i] >= '0' && d[i] <= '9' {
			i++
		}
	default:
		return nil, false
	}
	if i < len(d) && d[i] == '.' {
		i++
		if i >= len(d) || d[i] < '0' || d[i] > '9' {
			return nil, false
		}
		for i < len(d) && d[i] >= '0' && d[i] <= '9' {
			i++
		}
	}
	if i < len(d) && (d[i] == 'e' || d[i] == 'E') {
		i++
		if i < len(d) && (d[i] == '+' || d[i] == '-') {
			i++
		}
		if i >= len(d) || d[i] < '0' || d[i] > '9' {
			return nil, false
		}
		for i < len(d) && d[i] >= '0' && d[i] <= '9' {
			i++
		}
	}
	f, err := strconv.ParseFloat(string(d[start:i]), 64)
	if err != nil {
		return nil, false
	}
	p.i = i
	return f, true
}

// string reads a string at p.i (on its opening quote). Strings with only
// the short escapes are decoded here; a \u escape or bytes that are not
// valid UTF-8 are left to encoding/json for this string.
func (p *parser) string() (string, bool) {
	d := p.data
	start := p.i + 1
	i := start
	escapes := false
	ascii := true
	for {
		if i >= len(d) {
			return "", false
		}
		c := d[i]
		if c == '"' {
			break
		}
		if c < 0x20 {
			return "", false
		}
		if c == '\\' {
			escapes = true
			i++
			if i >= len(d) {
				return "", false
			}
		} else if c >= utf8.RuneSelf {
			ascii = false
		}
		i++
	}
	raw := d[start:i]
	end := i + 1
	if !ascii && !utf8.Valid(raw) {
		return p.fallbackString(end)
	}
	if !escapes {
		p.i = end
		return string(raw), true
	}
	buf := make([]byte, 0, len(raw))
	for j := 0; j < len(raw); j++ {
		c := raw[j]
		if c != '\\' {
			buf = append(buf, c)
			continue
		}
		j++
		switch raw[j] {
		case '"', '\\', '/':
			buf = append(buf, raw[j])
		case 'b':
			buf = append(buf, '\b')
		case 'f':
			buf = append(buf, '\f')
		case 'n':
			buf = append(buf, '\n')
		case 'r':
			buf = append(buf, '\r')
		case 't':
			buf = append(buf, '\t')
		case 'u':
			return p.fallbackString(end)
		default:
			return "", false
		}
	}
	p.i = end
	return string(buf), true
}

// fallbackString decodes the string token p.data[p.i:end] with encoding/json.
func (p *parser) fallbackString(end int) (string, bool) {
	var s string
	if err := json.Unmarshal(p.data[p.i:end], &s); err != nil {
		return "", false
	}
	p.i = end
	return s, true
}
