package transport

import (
	"errors"
	"fmt"
	"strings"
)

// Exit codes of the step binary; see README.md.
const (
	ExitOK      = 0 // success
	ExitFailed  = 1 // registry or filesystem failure after retries
	ExitUsage   = 2 // bad flags or arguments
	ExitRefused = 3 // hostile or corrupt artifact, or a limit exceeded
	ExitMissing = 4 // the artifact of a producer that must have pushed is missing
)

// MissingError reports producers whose artifacts must exist and do not: the
// registry lost them (a restart without persistent storage, retention) or a
// producer that ran to success did not push. Running the task on what is
// left would give it a workspace its ancestors did not leave.
type MissingError struct {
	Repository string
	Tasks      []string
}

func (e *MissingError) Error() string {
	return fmt.Sprintf("the artifact of task(s) %s is missing from %s (no tag %s): the registry lost it "+
		"(restarted without persistent storage, or retention deleted it) or the task did not push; "+
		"refusing to run this task on an incomplete workspace",
		strings.Join(e.Tasks, ", "), e.Repository, strings.Join(e.Tasks, ", "))
}

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
	var miss *MissingError
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &miss):
		return ExitMissing
	case errors.As(err, &u):
		return ExitUsage
	case errors.As(err, &r):
		return ExitRefused
	default:
		return ExitFailed
	}
}
