"use strict";
// Shared by the report and the history pages: numbers as pytest_flops.units writes them,
// and DOM and SVG elements.

const SVG = "http://www.w3.org/2000/svg";

// Counts come as decimal strings (pytest_flops.reports.html): a number holds integers
// exactly only up to 2^53, which a large model's step passes. BigInt keeps every digit.
const big = (n) => BigInt(n ?? 0);
const abs = (n) => (n < 0n ? -n : n);
const larger = (a, b) => (a > b ? a : b);
// the order of two numbers, BigInt or not (mixed comparisons are exact)
const compareNumbers = (a, b) => (a > b) - (a < b);
const exact = (n) => big(n).toLocaleString("en-US");
// the terminal report's units and rounding (pytest_flops.units): 130,023,424 is "130 MFLOP"
const FLOP_SCALES = [["FLOP", 0], ["KFLOP", 3], ["MFLOP", 6], ["GFLOP", 9], ["TFLOP", 12],
                     ["PFLOP", 15]];
const BYTE_SCALES = [["B", 0], ["kB", 3], ["MB", 6], ["GB", 9], ["TB", 12]];

// Three significant digits in the largest unit that keeps a leading digit, rounded half to
// even on the exact integer (as Python's Decimal does), trailing fractional zeros dropped.
function short(n, unit = "FLOP") {
  const scales = unit === "B" ? BYTE_SCALES : FLOP_SCALES;
  const amount = typeof n === "number" ? BigInt(Math.round(n)) : big(n);
  const size = amount < 0n ? -amount : amount;
  let [name, exponent] = scales[0];
  for (const [candidate, power] of scales) {
    if (size >= 10n ** BigInt(power)) [name, exponent] = [candidate, power];
  }
  const whole = (size / 10n ** BigInt(exponent)).toString().length;
  const decimals = Math.max(3 - whole, 0);
  const drop = exponent - decimals;  // digits rounded away; negative: none (a whole FLOP count)
  let kept = size;
  if (drop > 0) {
    const step = 10n ** BigInt(drop);
    const rest = size % step;
    kept = size / step;
    if (2n * rest > step || (2n * rest === step && kept % 2n === 1n)) kept += 1n;
  }
  const shown = drop > 0 ? decimals : 0;
  if (kept >= 1000n * 10n ** BigInt(shown) && exponent !== scales[scales.length - 1][1]) {
    // 999,999 rounds to 1000 KFLOP: say 1 MFLOP instead
    return short((amount < 0n ? -1n : 1n) * kept * 10n ** BigInt(Math.max(drop, 0)), unit);
  }
  let text = kept.toString();
  if (shown > 0) {
    text = text.padStart(shown + 1, "0");
    text = (text.slice(0, -shown) + "." + text.slice(-shown)).replace(/0+$/, "").replace(/\.$/, "");
  }
  return `${amount < 0n ? "-" : ""}${text} ${name}`;
}

function element(tag, attributes = {}, text) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

function svgElement(tag, attributes = {}) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
  return node;
}
