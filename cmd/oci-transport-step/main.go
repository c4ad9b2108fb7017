// Command oci-transport-step is the binary of the steps that the
// tekton-oci-transport webhook injects into converted tasks: the first step
// pulls what the task's ancestors left in a pipeline workspace, the last
// step pushes what the task changed.
//
// Usage:
//
//	oci-transport-step pull [common flags] --repository REPO --from T1,T2,... [--optional T2] [--status T1=Succeeded,...] --mount DIR [--subpath SUBPATH] [--mount ...] --state STATEDIR
//	oci-transport-step push [common flags] --repository REPO --tag TAG --task NAME --mount DIR [--subpath SUBPATH] [--mount ...] --state STATEDIR
//
// Common flags: --registry HOST[:PORT], --plain-http, --ca-file FILE,
// --docker-config FILE (default $DOCKER_CONFIG/config.json, else $HOME/.docker/config.json, if present),
// --registry-token-file FILE (a projected ServiceAccount token for the registry's token service),
// --concurrency N, --retries N, --compression gzip|zstd|none,
// --layer-size BYTES, --max-bytes BYTES, --max-entries N, --memory-budget BYTES. Sizes accept
// K, M, G (powers of 1000) and Ki, Mi, Gi suffixes.
//
// Exit codes:
//
//	0  ok
//	1  failed: registry or filesystem error after retries
//	2  usage error
//	3  refused content: a hostile or corrupt artifact (unsafe path, a path
//	   through a symlink, device file, digest mismatch, ...) or a limit exceeded
//	4  pull: the artifact of a producer that must have pushed is missing
//	   (the registry lost it); the task does not run on what is left
//
// Error messages name the offending entry. See transport/README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/tekton-oci-transport/tekton-oci-transport/transport"
)

var version = "dev"

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stderr))
}

func run(ctx context.Context, args []string, stderr io.Writer) int {
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}))
	if len(args) == 0 || (args[0] != "pull" && args[0] != "push" && args[0] != "version") {
		fmt.Fprintln(stderr, "usage: oci-transport-step pull|push [flags]  (see -h)")
		return transport.ExitUsage
	}
	if args[0] == "version" {
		fmt.Fprintln(stderr, version)
		return 0
	}
	cmd := args[0]
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		o           transport.Options
		mounts      []transport.Mount
		from, tag   string
		task, state string
		compression = transport.DefaultCompression
		layerSize   = int64(transport.DefaultLayerSize)
		maxBytes    = int64(transport.DefaultMaxBytes)
		maxEntries  = int64(transport.DefaultMaxEntries)
	)
	fs.StringVar(&o.Registry, "registry", "", "registry host[:port]")
	fs.BoolVar(&o.PlainHTTP, "plain-http", false, "use HTTP instead of HTTPS")
	fs.StringVar(&o.CAFile, "ca-file", "", "PEM CA bundle to trust in addition to the system roots")
	fs.StringVar(&o.DockerConfig, "docker-config", transport.DefaultDockerConfig(), "docker config.json with registry credentials")
	fs.StringVar(&o.TokenFile, "registry-token-file", "", "ServiceAccount token file (projected for the token service's audience), sent as the password to the registry's token realm and re-read on each token request; replaces --docker-config for --registry")
	fs.IntVar(&o.Concurrency, "concurrency", transport.DefaultConcurrency, "layers transferred in parallel")
	fs.IntVar(&o.Retries, "retries", transport.DefaultRetries, "retries per request (exponential backoff from "+
		transport.DefaultRetryBaseDelay.String()+" to "+transport.MaxRetryDelay.String()+")")
	fs.StringVar(&o.Repository, "repository", "", "repository path without host")
	fs.StringVar(&state, "state", "", "state directory shared by the pull and push steps")
	// A view is two flags, so that no character of a directory or a subPath
	// (`out/GOOS=linux`) can be mistaken for a separator.
	subPathSet := map[int]bool{}
	fs.Func("mount", "DIR: where the task sees the workspace (repeatable; each may be followed by --subpath)", func(s string) error {
		if s == "" {
			return errors.New("empty directory")
		}
		mounts = append(mounts, transport.Mount{Dir: s})
		return nil
	})
	fs.Func("subpath", "SUBPATH: the subPath of the workspace that the preceding --mount shows (default: the root)", func(s string) error {
		i := len(mounts) - 1
		if i < 0 {
			return errors.New("--subpath must follow a --mount")
		}
		if subPathSet[i] {
			return fmt.Errorf("--mount %s has two --subpath", mounts[i].Dir)
		}
		subPathSet[i] = true
		mounts[i].SubPath = s
		return nil
	})
	var optional, status string
	fs.StringVar(&from, "from", "", "pull: comma-separated producer task names, in order")
	fs.StringVar(&optional, "optional", "", "pull: comma-separated producers that may legitimately have pushed nothing (skipped by when, empty matrix, onError: continue)")
	fs.StringVar(&status, "status", "", "pull: comma-separated NAME=STATUS, Tekton's $(tasks.NAME.status): a producer whose artifact must exist only if Succeeded")
	fs.StringVar(&tag, "tag", "", "push: tag, <task> or <task>.<taskRunName>")
	fs.StringVar(&task, "task", "", "push: pipeline task name (manifest annotation)")
	fs.StringVar(&compression, "compression", compression, "push: gzip, zstd or none")
	fs.Func("layer-size", "push: target uncompressed bytes per layer (default "+formatSize(layerSize)+")", sizeFlag(&layerSize))
	fs.Func("max-bytes", "pull: refuse more than this many uncompressed bytes (default "+formatSize(maxBytes)+")", sizeFlag(&maxBytes))
	fs.Func("max-entries", "pull: refuse more than this many archive entries (default "+strconv.FormatInt(maxEntries, 10)+")", sizeFlag(&maxEntries))
	memBudget := memoryBudgetFlag(fs)
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return transport.ExitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "%s: unexpected arguments %q\n", cmd, fs.Args())
		return transport.ExitUsage
	}
	o.Log = log
	budget, soft := setMemoryLimit(*memBudget)
	if soft > 0 {
		log.Debug("GOMEMLIMIT from the memory budget", "GOMEMLIMIT", soft, "budget", budget)
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	var err error
	switch cmd {
	case "pull":
		statuses := map[string]string{}
		for _, kv := range splitList(status) {
			name, st, ok := strings.Cut(kv, "=")
			if !ok {
				fmt.Fprintf(stderr, "pull: --status %q: want NAME=STATUS\n", kv)
				return transport.ExitUsage
			}
			statuses[name] = st
		}
		_, err = transport.Pull(ctx, transport.PullOptions{Options: o, From: splitList(from), Mounts: mounts, StateDir: state,
			Optional: splitList(optional), Status: statuses,
			Limits: transport.Limits{MaxBytes: maxBytes, MaxEntries: maxEntries}})
	case "push":
		if task == "" {
			task, _, _ = strings.Cut(tag, ".")
		}
		_, err = transport.Push(ctx, transport.PushOptions{Options: o, Tag: tag, Task: task, Mounts: mounts, StateDir: state,
			Compression: compression, LayerSize: layerSize, MemoryBudget: budget})
	}
	code := transport.ExitCode(err)
	if err != nil {
		log.Error(cmd+" failed", "exit", code, "err", err.Error())
	}
	return code
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, t := range strings.Split(s, ",") {
		if t = strings.TrimSpace(t); t != "" {
			out = append(out, t)
		}
	}
	return out
}

func sizeFlag(dst *int64) func(string) error {
	return func(s string) error {
		v, err := parseSize(s)
		if err != nil {
			return err
		}
		*dst = v
		return nil
	}
}

// formatSize writes v as parseSize reads it, in the largest binary unit
// that divides it: 64Mi, 64Gi.
func formatSize(v int64) string {
	for _, u := range []struct {
		suf string
		m   int64
	}{{"Gi", 1 << 30}, {"Mi", 1 << 20}, {"Ki", 1 << 10}} {
		if v >= u.m && v%u.m == 0 {
			return strconv.FormatInt(v/u.m, 10) + u.suf
		}
	}
	return strconv.FormatInt(v, 10)
}

func parseSize(s string) (int64, error) {
	mult := int64(1)
	for _, u := range []struct {
		suf string
		m   int64
	}{{"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}, {"K", 1e3}, {"M", 1e6}, {"G", 1e9}} {
		if strings.HasSuffix(s, u.suf) {
			s, mult = strings.TrimSuffix(s, u.suf), u.m
			break
		}
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v <= 0 {
		return 0, fmt.Errorf("invalid size %q", s)
	}
	return v * mult, nil
}
