package main

// Reading the cluster (kubectl) and the case files, and the small accessors of untyped objects.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"

	"sigs.k8s.io/yaml"
)

// ---- kubectl

func kc(stdin []byte, args ...string) ([]byte, error) {
	if r, ok := parseRead(args); ok && stdin == nil && r.verb == "logs" {
		return apiRead(r)
	}
	cmd := exec.Command(kubectl, args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("kubectl %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

func kcJSON(v any, args ...string) error {
	if r, ok := parseRead(args); ok && r.verb == "get" {
		out, err := apiRead(r)
		if err != nil {
			return err
		}
		return json.Unmarshal(out, v)
	}
	out, err := kc(nil, append(args, "-o", "json")...)
	if err != nil {
		return err
	}
	return json.Unmarshal(out, v)
}

// ---- reading and preparing the objects

func readDocs(paths []string) ([]obj, error) {
	var docs []obj
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		for _, part := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(b), -1) {
			var o obj
			if err := yaml.Unmarshal([]byte(part), &o); err != nil {
				return nil, fmt.Errorf("%s: %w", p, err)
			}
			if len(o) > 0 {
				docs = append(docs, o)
			}
		}
	}
	return docs, nil
}

func m(o any, keys ...string) obj {
	cur, _ := o.(obj)
	for _, k := range keys {
		cur, _ = cur[k].(obj)
	}
	return cur
}

func s(o obj, k string) string { v, _ := o[k].(string); return v }

func list(o obj, k string) []any { v, _ := o[k].([]any); return v }
