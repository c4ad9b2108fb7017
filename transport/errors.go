package transport

import (
	"errors"
	"fmt"
)

// Exit codes of the step binary; see README.md.
const (
	ExitOK      = 0 // success
	ExitFailed  = 1 // registry or filesystem failure after retries
	ExitUsage   = 2 // bad flags or arguments
	ExitRefused = 3 // hostile or corrupt artifact, or a limit exceeded
)

// RefusedError reports content that was refused: an unsafe archive entry, a
// digest mismatch, a limit exceeded. Entry names the offending path or blob.
type RefusedError struct {
	Entry  string
	Reason string
}

func (e *RefusedError) Error() string {
	if e.Entry == "" {
		return "refused: " + e.Reason
	}
	return fmt.Sprintf("refused %q: %s", e.Entry, e.Reason)
}

func refuse(entry, format string, args ...any) error {
	return &RefusedError{Entry: entry, Reason: fmt.Sprintf(format, args...)}
}

// UsageError reports invalid options.
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

func usagef(format string, args ...any) error { return &UsageError{Msg: fmt.Sprintf(format, args...)} }

// ExitCode maps an error returned by Push or Pull to the step's exit code.
func ExitCode(err error) int {
	var r *RefusedError
	var u *UsageError
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &u):
		return ExitUsage
	case errors.As(err, &r):
		return ExitRefused
	default:
		return ExitFailed
	}
}
