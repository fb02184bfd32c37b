"""Images: what a listing's photos say about a brand. Decoding untrusted image bytes under one
set of limits (`image_decode`), geometric verification of enrolled logos and official product
photos by local features (`logo_geometry`), copies of official photos by perceptual hash and
embedding (`image_copy`), and the image signal index the scanner's image source asks for a
listing's evidence (`image_signals`: logos, word marks read by OCR, photo copies, image errors)."""
