"""The measures malleable-eval reports. Each module computes one family:

- dift: DIFT-style Mean Distance of dragged handles (features of the loaded model's UNet);
- pixels: PSNR, SSIM and MSE against the input, over a region (outside the edit mask);
- lpips: LPIPS (AlexNet) when its package and weights are on this machine, else unavailable;
- vit: structure distance (DINO ViT keys' self-similarity) and CLIP score;
- truth: ShapesBench's ground-truth measures (where the object went, its silhouette, its attributes).
"""
