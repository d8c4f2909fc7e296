"""WCAG 2 contrast of what a page shows, measured in the browser (Playwright)."""

# Every element that shows text (a text node of its own, a form control, an SVG <text>) and the
# chart's shapes: the colors chromium computed, the background they are drawn on (the element's
# and its ancestors' background colors composited over the canvas), the text's size and weight.
# Colors are read back from a 1x1 canvas, so any CSS color syntax comes out as sRGB.
MEASURE = """
async () => {
  // Colors in transition (the admin's links fade in 0.15 s) are measured once they arrive.
  document.body.getBoundingClientRect();
  await Promise.all(document.getAnimations().map((animation) => animation.finished));
  const canvas = document.createElement("canvas");
  canvas.width = canvas.height = 1;
  const context = canvas.getContext("2d", {willReadFrequently: true});
  const rgba = (css) => {
    context.clearRect(0, 0, 1, 1);
    context.fillStyle = "rgba(0, 0, 0, 0)";
    context.fillStyle = css;
    context.fillRect(0, 0, 1, 1);
    const [r, g, b, a] = context.getImageData(0, 0, 1, 1).data;
    return [r, g, b, a / 255];
  };
  const over = ([r, g, b, a], [R, G, B]) =>
    [r * a + R * (1 - a), g * a + G * (1 - a), b * a + B * (1 - a)];
  const probe = document.createElement("div");
  probe.style.backgroundColor = "Canvas";
  document.body.append(probe);
  const canvasColor = rgba(getComputedStyle(probe).backgroundColor);
  probe.remove();
  const background = (element) => {
    const layers = [];
    for (let node = element; node instanceof Element; node = node.parentElement) {
      layers.push(rgba(getComputedStyle(node).backgroundColor));
    }
    return layers.reverse().reduce((below, layer) => over(layer, below), canvasColor);
  };
  const shape = (element) => element.matches("svg rect, svg line, svg path, svg circle");
  const shown = (element) => {
    const style = getComputedStyle(element);
    const box = element.getBoundingClientRect();
    // Not the screen readers' 1 px texts, nor what waits off the page (a skip link); a line
    // of the chart is as thin as its stroke.
    const sized = shape(element) ? box.width + box.height > 0 : box.width > 1 && box.height > 1;
    return style.visibility === "visible" && style.display !== "none" && sized
      && box.right + scrollX > 0 && box.bottom + scrollY > 0 && Number(style.opacity) > 0;
  };
  const describe = (element) => {
    const id = element.id ? "#" + element.id : "";
    const classes = [...element.classList].map((name) => "." + name).join("");
    const text = (element.textContent || element.value || "").trim().slice(0, 30);
    return `${element.tagName.toLowerCase()}${id}${classes} "${text}"`;
  };
  const found = [];
  for (const element of document.querySelectorAll("body *")) {
    if (!shown(element)) continue;
    const style = getComputedStyle(element);
    const svg = element instanceof SVGElement;
    const ownText = [...element.childNodes].some(
      (node) => node.nodeType === Node.TEXT_NODE && node.textContent.trim());
    const control = element.matches("input:not([type=hidden]), select, textarea");
    const back = background(svg ? element.closest("svg") : element);
    const size = parseFloat(style.fontSize), weight = Number(style.fontWeight);
    if (ownText || control) {
      const color = rgba(svg ? style.fill : style.color);
      found.push({what: describe(element), kind: "text", color: over(color, back), back,
                  large: size >= 24 || (size >= 18.66 && weight >= 700)});
    } else if (shape(element)) {
      const paint = element.matches("line") ? style.stroke : style.fill;
      found.push({what: describe(element), kind: "graphic", color: over(rgba(paint), back), back,
                  large: true});
    }
  }
  return found;
}
"""


def luminance(rgb: list[float]) -> float:
    def channel(value: float) -> float:
        value /= 255
        return value / 12.92 if value <= 0.04045 else ((value + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(value) for value in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast_ratio(first: list[float], second: list[float]) -> float:
    light, dark = sorted((luminance(first), luminance(second)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def contrasts(page) -> list[tuple[str, float, float]]:
    """(element, its contrast ratio, the AA minimum for it) for everything the page shows:
    4.5 for text, 3 for large text (24 px, or 18.66 px bold) and the chart's shapes."""
    return [
        (found["what"], contrast_ratio(found["color"], found["back"]), 3 if found["large"] else 4.5)
        for found in page.evaluate(MEASURE)
    ]
