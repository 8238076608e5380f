package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	tea "charm.land/bubbletea/v2"

	"github.com/mattingctl/mattingctl/internal/control"
)

// topModel is top's live screen: it polls the instance's status once an
// interval and draws it.
type topModel struct {
	client   instanceClient
	name     string
	interval time.Duration
	now      func() time.Time
	rates    *rateTracker
	st       control.Status
	screen   topScreen // how to draw: size, styles, latency
	// err is why top stopped on its own: the instance went away.
	err error
}

// statusMsg is a poll's answer.
type statusMsg struct {
	st  control.Status
	at  time.Time
	err error
}

// tickMsg says it is time to poll again.
type tickMsg struct{}

// newTopModel starts from st, the first poll's answer, read at at.
func newTopModel(c instanceClient, name string, st control.Status, at time.Time, interval time.Duration, now func() time.Time, screen topScreen) topModel {
	m := topModel{client: c, name: name, interval: interval, now: now, rates: newRateTracker(), screen: screen}
	m.observe(st, at)
	return m
}

func (m *topModel) observe(st control.Status, at time.Time) {
	m.st = st
	m.rates.observe(st, at)
}

// Init waits an interval before the second poll.
func (m topModel) Init() tea.Cmd { return m.tick() }

func (m topModel) tick() tea.Cmd {
	return tea.Tick(m.interval, func(time.Time) tea.Msg { return tickMsg{} })
}

// poll asks the instance for its status. The next tick is set once the
// answer is in, so a slow instance is never asked twice at once.
func (m topModel) poll() tea.Cmd {
	c, now, timeout := m.client, m.now, max(m.interval, 5*time.Second)
	return func() tea.Msg {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		st, err := c.Status(ctx)
		return statusMsg{st: st, at: now(), err: err}
	}
}

func (m topModel) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.KeyPressMsg:
		switch msg.String() {
		case "q", "Q", "ctrl+c":
			return m, tea.Quit
		}
	case tea.WindowSizeMsg:
		m.screen.width, m.screen.height = msg.Width, msg.Height
	case tickMsg:
		return m, m.poll()
	case statusMsg:
		if msg.err != nil {
			m.err = fmt.Errorf("instance %q went away: %w", m.name, msg.err)
			return m, tea.Quit
		}
		m.observe(msg.st, msg.at)
		return m, m.tick()
	}
	return m, nil
}

// View draws the latest status in the alternate screen, which is left
// when top quits.
func (m topModel) View() tea.View {
	v := tea.NewView(m.frame())
	v.AltScreen = true
	return v
}

// frame is the screen's text; empty once the instance went away, so no
// stale frame is drawn.
func (m topModel) frame() string {
	if m.err != nil {
		return ""
	}
	s := m.screen
	s.st, s.rates, s.now = m.st, m.rates, m.now()
	return strings.Join(s.lines(), "\n")
}
