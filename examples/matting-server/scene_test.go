package main

import (
	"image"
	"image/color"
	"math"
	"math/rand/v2"
)

// A synthetic photo with a known foreground, as examples/matte's tests draw
// them: the handler's tests need one to check the matte reached the answer.

type scene struct {
	w, h     int
	isFg     func(x, y int) bool
	fgColour func(x, y int) color.RGBA
	bgColour func(x, y int) color.RGBA
	noise    float64 // standard deviation per channel
}

func (s scene) render(seed uint64) *image.RGBA {
	rng := rand.New(rand.NewPCG(seed, 7))
	img := image.NewRGBA(image.Rect(0, 0, s.w, s.h))
	for y := range s.h {
		for x := range s.w {
			c := s.bgColour(x, y)
			if s.isFg(x, y) {
				c = s.fgColour(x, y)
			}
			n := func(v uint8) uint8 {
				return uint8(min(255, max(0, math.Round(float64(v)+rng.NormFloat64()*s.noise))))
			}
			img.SetRGBA(x, y, color.RGBA{n(c.R), n(c.G), n(c.B), 255})
		}
	}
	return img
}

func flat(c color.RGBA) func(x, y int) color.RGBA { return func(int, int) color.RGBA { return c } }

// disc builds a scene of one disc of radius r centred at (cx, cy).
func disc(w, h int, cx, cy, r float64) scene {
	return scene{w: w, h: h, isFg: func(x, y int) bool {
		return math.Hypot(float64(x)+0.5-cx, float64(y)+0.5-cy) <= r
	}}
}

var (
	red       = color.RGBA{200, 30, 30, 255}
	greyGreen = color.RGBA{120, 140, 110, 255}
	blue      = color.RGBA{33, 150, 242, 255}
)
