"""kp3d: unsupervised 3D keypoints from category image collections."""
