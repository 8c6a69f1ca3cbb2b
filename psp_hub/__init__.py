"""psp_hub: PSP-GAN, personalized face super-resolution with a StyleGAN2 prior and reference photos."""

__version__ = "0.1.0"
