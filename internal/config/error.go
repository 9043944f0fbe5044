package config

import "strings"

// Error is a setting that cannot be used. Its message is one line that
// names the setting the way an operator sets it, by environment name and
// flag, because that line is all an operator sees when floodgate refuses
// to start:
//
//	FLOODGATE_BATCH_MAX (--batch-max) = 0: must be at least 1
//	FLOODGATE_BATCH_MAX (--batch-max) = "many" from env: not a whole number
type Error struct {
	// Name is the setting's environment name.
	Name string
	// Flag is the setting's flag, without dashes.
	Flag string
	// Value is the value as shown: quoted when it is text, secrets masked;
	// empty when there is no value to show (a secret file that cannot be
	// read).
	Value string
	// Origin says where the value came from ("env", "file path:line",
	// "flag --batch-max"); Load sets it, Validate does not.
	Origin string
	// Problem says what is wrong.
	Problem string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Name)
	b.WriteString(" (--")
	b.WriteString(e.Flag)
	b.WriteString(")")
	if e.Value != "" {
		b.WriteString(" = ")
		b.WriteString(e.Value)
	}
	if e.Origin != "" {
		b.WriteString(" from ")
		b.WriteString(e.Origin)
	}
	b.WriteString(": ")
	b.WriteString(e.Problem)
	return oneLine(b.String())
}

// oneLine replaces line breaks, which an operating system error could
// carry, so the message stays one line.
func oneLine(s string) string {
	return strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ").Replace(s)
}
