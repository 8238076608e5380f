package matte

import (
	"image"
	"image/color"
)

// Masks are row-major slices of w*h values. Binary masks hold 0 or 1.

// floodBackground returns the binary mask of the candidate pixels (cand == 1)
// that are 4-connected to the image border through other candidates.
func floodBackground(cand []uint8, w, h int) []uint8 {
	bg := make([]uint8, len(cand))
	stack := make([]int32, 0, 2*(w+h))
	push := func(i int) {
		if cand[i] == 1 && bg[i] == 0 {
			bg[i] = 1
			stack = append(stack, int32(i))
		}
	}
	for x := range w {
		push(x)
		push((h-1)*w + x)
	}
	for y := range h {
		push(y * w)
		push(y*w + w - 1)
	}
	for len(stack) > 0 {
		i := int(stack[len(stack)-1])
		stack = stack[:len(stack)-1]
		x, y := i%w, i/w
		if x > 0 {
			push(i - 1)
		}
		if x < w-1 {
			push(i + 1)
		}
		if y > 0 {
			push(i - w)
		}
		if y < h-1 {
			push(i + w)
		}
	}
	return bg
}

// morph dilates (or erodes) a binary mask with a 3x3 square. Pixels beyond
// the edge repeat the edge, so a subject cut off by the frame is not eroded
// from that side.
func morph(m []uint8, w, h int, dilate bool) []uint8 {
	pick := func(a, b, c uint8) uint8 {
		if dilate {
			return max(a, b, c)
		}
		return min(a, b, c)
	}
	tmp := make([]uint8, len(m))
	for y := range h {
		r := m[y*w : y*w+w]
		for x := range w {
			tmp[y*w+x] = pick(r[max(x-1, 0)], r[x], r[min(x+1, w-1)])
		}
	}
	out := make([]uint8, len(m))
	for y := range h {
		up, mid, down := max(y-1, 0)*w, y*w, min(y+1, h-1)*w
		for x := range w {
			out[mid+x] = pick(tmp[up+x], tmp[mid+x], tmp[down+x])
		}
	}
	return out
}

// feather turns a binary mask into alpha values 0-255 with a 3x3 box blur,
// giving a one-pixel soft edge on both sides of the boundary.
func feather(m []uint8, w, h int) []uint8 {
	tmp := make([]uint16, len(m))
	for y := range h {
		r := m[y*w : y*w+w]
		for x := range w {
			tmp[y*w+x] = uint16(r[max(x-1, 0)]) + uint16(r[x]) + uint16(r[min(x+1, w-1)])
		}
	}
	alpha := make([]uint8, len(m))
	for y := range h {
		up, mid, down := max(y-1, 0)*w, y*w, min(y+1, h-1)*w
		for x := range w {
			s := uint32(tmp[up+x] + tmp[mid+x] + tmp[down+x]) // 0..9
			alpha[mid+x] = uint8((s*255 + 4) / 9)
		}
	}
	return alpha
}

// composite blends src over bg with the given alpha matte:
// out = alpha*fg + (1-alpha)*bg. src is premultiplied, so its own alpha
// multiplies the matte.
func composite(src *image.RGBA, alpha []uint8, bg color.RGBA) *image.RGBA {
	w, h := src.Rect.Dx(), src.Rect.Dy()
	dst := image.NewRGBA(image.Rect(0, 0, w, h))
	bgc := [3]uint32{uint32(bg.R), uint32(bg.G), uint32(bg.B)}
	for y := range h {
		s := src.Pix[y*src.Stride : y*src.Stride+4*w]
		d := dst.Pix[y*dst.Stride : y*dst.Stride+4*w]
		for x := range w {
			a := uint32(alpha[y*w+x])
			cover := a * uint32(s[4*x+3]) // 0..255*255
			for c := range 3 {
				d[4*x+c] = uint8((a*uint32(s[4*x+c])*255 + (255*255-cover)*bgc[c] + 255*255/2) / (255 * 255))
			}
			d[4*x+3] = 255
		}
	}
	return dst
}
