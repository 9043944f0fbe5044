package config

import (
	"fmt"
	"io"
)

// Dump writes every setting, one a line, as NAME=value  # source, in
// table order, so an operator sees what the server really runs with and
// which layer to change. Secrets are ******** when set and empty when not;
// the webhook secrets show one ******** per configured secret, so a
// rotation in progress is visible; a password in the store URL is masked.
// Apart from the masks and the FLOODGATE_CONFIG line (a file cannot name
// itself), the lines are a config file that loads the same settings.
//
// Dump returns the first write error, so that `floodgate config > file`
// on a full disk fails instead of leaving half a file.
func (c *Config) Dump(w io.Writer) error {
	for _, o := range options {
		v := o.shown(o.value(c))
		if !o.secret {
			v = quoteValue(v)
		}
		if _, err := fmt.Fprintf(w, "%s=%s  # %s\n", o.env, v, c.origin(o)); err != nil {
			return err
		}
	}
	return nil
}
