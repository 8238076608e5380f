package main

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"github.com/spf13/pflag"
)

// A value a flag cannot take is refused in words, the same on the command
// line and in a config file: `want a whole number, got "four"`, never
// strconv's `parsing "four": invalid syntax`. pflag puts `invalid argument
// "four" for "--replicas" flag:` before it, applyConfig the file, the line
// and the setting.

// Wants by flag type (pflag.Value.Type()), for the types whose values are
// refused by their parser's own text; flags of other types (strings,
// lists of strings) take any value.
var wants = map[string]string{
	"int":      "a whole number",
	"int32":    "a whole number",
	"int64":    "a whole number",
	"uint":     "a whole number, 0 or more",
	"uint64":   "a whole number, 0 or more",
	"float64":  "a number",
	"duration": "a duration such as 30s, 5m or 1h",
	"bool":     "true or false",
	"size":     "a size such as 50MiB, 512k or 1048576",
	"limit":    "a whole number, auto or auto:MIN-MAX",
	"count":    "a whole number or MIN:MAX such as 1:6",
}

// badValue is the error for a value s that is not what a flag of type typ
// takes.
func badValue(typ, s string) error { return badValueOr(typ, s, "") }

// badValueOr is badValue for a flag that also takes the word or (auto).
func badValueOr(typ, s, or string) error {
	want := wants[typ]
	if or != "" {
		want += " or " + or
	}
	err := fmt.Sprintf("want %s, got %q", want, s)
	if typ == "duration" {
		if _, nerr := strconv.ParseFloat(s, 64); nerr == nil {
			err += fmt.Sprintf(" (a unit is needed: %ss)", s)
		}
	}
	return fmt.Errorf("%s", err)
}

// plainValue is one of pflag's own values with its parser's errors put in
// words.
type plainValue struct{ pflag.Value }

func (v plainValue) Set(s string) error {
	if err := v.Value.Set(s); err != nil {
		return badValue(v.Type(), s)
	}
	return nil
}

// plainErrors puts the errors of fs's flags of pflag's own number, duration
// and boolean types in words. The flag types of this package (numflags.go)
// speak words already, and more precise ones than badValue's (a bound, say).
func plainErrors(fs *pflag.FlagSet) {
	fs.VisitAll(func(f *pflag.Flag) {
		if wants[f.Value.Type()] != "" && isPflagValue(f.Value) {
			f.Value = plainValue{f.Value}
		}
	})
}

// isPflagValue reports whether v is one of pflag's own value types.
func isPflagValue(v pflag.Value) bool {
	t := reflect.TypeOf(v)
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t.PkgPath() == reflect.TypeFor[pflag.FlagSet]().PkgPath()
}

// oneValue refuses a list in a config file for a flag that takes one value
// of a type in wants, rather than joining the list with commas into a value
// refused for reasons harder to see.
func oneValue(typ string, values []string) error {
	if len(values) > 1 && wants[typ] != "" {
		return fmt.Errorf("want %s, got a list of %d: [%s]", wants[typ], len(values), strings.Join(values, ", "))
	}
	return nil
}
